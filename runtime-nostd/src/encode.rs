//! The one writer of the model blob format (feature `encode`, uses `std`), and the buffer
//! planner.
//!
//! The trainer's quantizer fills a [`ModelSpec`] (a graph of [`NodeSpec`]s) and calls
//! [`encode`], which computes every value's shape, plans the arena ([`plan`]), lays the blob out
//! as `docs/blob-format.md` describes and then validates the result with
//! [`Model::from_bytes`](crate::Model::from_bytes): a blob `encode` returns always loads.

use std::vec::Vec;

use crate::blob::{
    channel_arrays_len, conv_axis, pad4, pool_axis, ACT_IDENTITY, ACT_LUT, ACT_RELU,
    ADD_ARRAYS_LEN, ADD_VERSION, ADD_WEIGHT_MAX, DTYPE_I16, HEADER_RESERVED, INT16_VERSION,
    INT8_VERSION, IN_PLACE_VERSION, KIND_ADD, KIND_AVG_POOL, KIND_CONV2D, KIND_DENSE,
    KIND_DEPTHWISE, KIND_MAX_POOL, MAGIC, NODE_HEADER_LEN, NO_VALUE, PAD_SAME, PAD_VALID,
    SHAPE_KEEPING_VERSION, TEMP_LEN, WIDE_ADD_VERSION, WIDE_ADD_WEIGHT_MAX,
};
use crate::crc32::crc32;
use crate::fixed::{multiplier_is_valid, shift_is_valid};
use crate::kernels::inplace;
use crate::model::{affine, affine16_at, Model, MAX_LAYERS};
use crate::Error;

/// One input-stage affine map: `q = sat8(zp_in + rq(256 * x - offset, multiplier, shift))`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffineSpec {
    /// `mu = round_half_even(256 * mean)`.
    pub offset: i32,
    /// In `[2^30, 2^31)`.
    pub multiplier: i32,
    /// In `[1, 62]`.
    pub shift: u8,
}

/// The input stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputStageSpec {
    /// The zero point of the quantized input (value 0).
    pub zero_point: i8,
    /// One entry shared by all features, or one per input feature (HWC order).
    pub features: Vec<AffineSpec>,
    /// The raw inputs' fraction bits: the device passes `round(x * 2^frac_bits)` for a real
    /// value `x` (0 for integer data). At most [`crate::MAX_INPUT_FRAC_BITS`].
    pub frac_bits: u8,
}

/// A layer's activation.
#[allow(clippy::large_enum_variant)] // host-side description; the table is the point
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivationSpec {
    Identity,
    /// Fused clamp: the output is at least `output_zero_point`.
    Relu,
    /// Requantize to `pre_zero_point` (with `sat8`), then `table[q + 128]`.
    Lut {
        pre_zero_point: i8,
        table: [i8; 256],
    },
}

/// One dense layer. It reads its input value flattened (`h * w * c` bytes in HWC order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenseSpec {
    pub n_inputs: u32,
    pub n_outputs: u32,
    /// Already folded into `bias`, but checked: it must be the zero point of the value the layer
    /// reads.
    pub input_zero_point: i8,
    /// For `Lut`: the zero point after the table.
    pub output_zero_point: i8,
    /// Row-major `[n_outputs][n_inputs]`.
    pub weights: Vec<i8>,
    /// Folded: `q_b - zp_in * sum_i q_w`.
    pub bias: Vec<i32>,
    /// Per output channel; requantize to `output_zero_point` (Identity, Relu) or to
    /// `pre_zero_point` (Lut).
    pub multipliers: Vec<i32>,
    pub shifts: Vec<u8>,
    pub activation: ActivationSpec,
}

/// The padding of a convolution (docs/layer-graph.md "Padding and output sizes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// No padding: `out = (in - k) / s + 1`.
    Valid,
    /// TensorFlow's `SAME`: `out = ceil(in / s)`, the extra row or column at the end.
    Same,
}

/// One `Conv2d` or `DepthwiseConv2d` layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvSpec {
    /// `[kh, kw]`, each 1 to 65535.
    pub kernel: [u32; 2],
    /// `[sh, sw]`, each 1 to 65535.
    pub stride: [u32; 2],
    pub padding: Padding,
    /// Output channels; a depthwise layer's equals its input channels.
    pub n_outputs: u32,
    /// Checked: the zero point of the value the layer reads.
    pub input_zero_point: i8,
    /// For `Lut`: the zero point after the table.
    pub output_zero_point: i8,
    /// OHWI `[n_outputs][kh][kw][c]` for `Conv2d`, `[kh][kw][c]` for `DepthwiseConv2d`.
    pub weights: Vec<i8>,
    /// NOT folded: `acc = bias + sum w (x - zp_in)` over the taps inside the input.
    pub bias: Vec<i32>,
    pub multipliers: Vec<i32>,
    pub shifts: Vec<u8>,
    pub activation: ActivationSpec,
}

/// One `MaxPool2d` or `AvgPool2d` layer (valid windows; the stride divides `in - k`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    pub kernel: [u32; 2],
    pub stride: [u32; 2],
    /// Checked: the zero point of the value the layer reads.
    pub input_zero_point: i8,
    /// A max pool's must equal `input_zero_point`.
    pub output_zero_point: i8,
    /// Average pool: `multiplier / 2^shift = s_in / (s_out kh kw)`; unused by a max pool.
    pub multiplier: i32,
    pub shift: u8,
}

/// One residual `Add` (docs/layer-graph.md): the node's `input` is operand `a`, `other` operand
/// `b`, two values of one shape; the output has that shape, and element `i` is
/// `clamp(sat8(zp_out + rq(W_a (a[i] - zp_a) + W_b (b[i] - zp_b), M, t)), lo, 127)`, `lo` the
/// output zero point for relu and `-128` for identity. int8 only (blob format version 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddSpec {
    /// The second input's value id: an earlier value, like the node's `input`.
    pub other: usize,
    /// Checked: `[zp_a, zp_b]`, the zero points of the two values the layer reads.
    pub input_zero_points: [i8; 2],
    pub output_zero_point: i8,
    /// `[W_a, W_b]`, each in `[-2^16, 2^16]`: `W = round(s_x / max(s_a, s_b) * 2^16)`.
    pub weights: [i32; 2],
    /// `multiplier / 2^shift = max(s_a, s_b) / (2^16 s_out)`; in `[2^30, 2^31)` and `[1, 62]`.
    pub multiplier: i32,
    pub shift: u8,
    /// Identity or relu; a table is refused ([`Error::AddActivation`]).
    pub activation: ActivationSpec,
}

/// A layer and its parameters.
#[allow(clippy::large_enum_variant)] // host-side description
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerSpec {
    Dense(DenseSpec),
    Conv2d(ConvSpec),
    DepthwiseConv2d(ConvSpec),
    MaxPool2d(PoolSpec),
    AvgPool2d(PoolSpec),
    Add(AddSpec),
}

impl LayerSpec {
    /// The value ids the layer reads besides the node's `input`: an `Add`'s `other`.
    fn other_input(&self) -> Option<usize> {
        match self {
            LayerSpec::Add(a) => Some(a.other),
            _ => None,
        }
    }
}

/// One node of the graph: node `k` reads value `input` (0 is the model input, `j + 1` the
/// output of node `j < k`), an `Add` also its `other`, and writes value `k + 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub input: usize,
    pub layer: LayerSpec,
}

/// The width of a model's activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activations {
    /// int8, asymmetric (blob format version 3).
    Int8,
    /// int16, symmetric (every zero point 0), with int8 weights: the 16x8 scheme (blob format
    /// version 4). Dense layers with identity or ReLU only in this version (no `Add`).
    Int16,
}

impl Activations {
    fn element_bytes(self) -> u64 {
        match self {
            Activations::Int8 => 1,
            Activations::Int16 => 2,
        }
    }
}

/// A whole model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub activations: Activations,
    pub input: InputStageSpec,
    /// `[h, w, c]` of the model input; an MLP's is `[1, 1, n_inputs]`.
    pub input_shape: [u32; 3],
    pub nodes: Vec<NodeSpec>,
    /// The logits' scale (for `Model::dequantize`): positive, finite, non-zero.
    pub output_scale: f32,
    /// Must equal the last layer's `output_zero_point`.
    pub output_zero_point: i8,
}

/// A chain: layer `k` reads the output of layer `k - 1` (the model input for layer 0).
pub fn chain(layers: impl IntoIterator<Item = LayerSpec>) -> Vec<NodeSpec> {
    layers
        .into_iter()
        .enumerate()
        .map(|(input, layer)| NodeSpec { input, layer })
        .collect()
}

impl NodeSpec {
    /// The value ids the node reads: its `input`, and an `Add`'s `other`.
    pub fn reads(&self) -> Vec<usize> {
        core::iter::once(self.input)
            .chain(self.layer.other_input())
            .collect()
    }
}

/// A buffer plan: every value's byte offset in one arena, and the nodes that run in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Value `v` occupies `offsets[v] .. offsets[v] + size[v]`.
    pub offsets: Vec<u64>,
    /// The arena: the end of the last value's (or in-place temporary's) bytes. What
    /// `Model::scratch_len` reports for the blob.
    pub arena_len: u64,
    /// What a layer-by-layer plan without reuse would need: the sum of every value's size.
    pub no_reuse_len: u64,
    /// The arena of the layer-by-layer plan, where every node's input and output are separate
    /// bytes ([`plan`]): equal to `arena_len` when no node runs in place, larger otherwise.
    pub layer_by_layer_len: u64,
    /// Per node: `Some` when it writes its output over its input's bytes.
    pub in_place: Vec<Option<InPlace>>,
}

impl Plan {
    /// The number of nodes that run in place.
    pub fn n_in_place(&self) -> usize {
        self.in_place.iter().flatten().count()
    }
}

/// A node that runs in place in a [`Plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InPlace {
    /// The value the output is written over: the node's input, or an `Add`'s operand.
    pub input: usize,
    /// The temporary the node's kernel uses while it runs: `temp_len` bytes of the arena from
    /// `temp_offset`, alive at this node only (`0, 0` for an `Add`).
    pub temp_offset: u64,
    pub temp_len: u64,
}

/// How node `k` can run in place, for [`plan_in_place`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InPlaceOption {
    /// The value the output would be written over: the node's input, or an `Add`'s operand. It
    /// must be read by node `k` and by no later node.
    pub input: usize,
    /// Where that value starts relative to the output: 0 (the output at the input's offset),
    /// or `h w (c_out - c_in)` for a widening pointwise convolution (the input at the end of the
    /// output's bytes).
    pub input_at: u64,
    /// The bytes of the temporary the kernel needs (0 for none).
    pub temp_len: u64,
}

/// Plans the arena for `sizes[v]` bytes per value, where node `k` reads the values `reads[k]`
/// (one, or an `Add`'s two) and writes value `k + 1` (`sizes.len() == reads.len() + 1`).
///
/// A value lives from the node that writes it (value 0 from node 0) to the last node that reads
/// it, counting every input of every node (the last value to the end): a skip connection keeps
/// its value alive until the `Add` that reads it. Values are placed largest first, each at the
/// lowest offset where it overlaps no placed value alive at the same time. For a chain (node
/// `k` reads value `k` alone) the arena must be the lower bound `max_k (size[k] + size[k + 1])`;
/// if the greedy placement misses it, values alternate between the front and the back of that
/// bound instead.
// Bake-time host code: every index is below `sizes.len()` by construction, and the sums of
// offsets and sizes saturate.
#[allow(clippy::indexing_slicing)]
pub fn plan<R: AsRef<[usize]>>(sizes: &[u64], reads: &[R]) -> Plan {
    let n = sizes.len();
    let start: Vec<usize> = (0..n).map(|v| v.saturating_sub(1)).collect();
    let mut end = start.clone();
    for (k, r) in reads.iter().enumerate() {
        for &i in r.as_ref() {
            if let Some(e) = end.get_mut(i) {
                *e = (*e).max(k);
            }
        }
    }
    let alive_together = |a: usize, b: usize| start[a] <= end[b] && start[b] <= end[a];
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(a.cmp(&b)));
    let mut offsets = std::vec![0u64; n];
    let mut placed: Vec<usize> = Vec::new();
    for &v in &order {
        let mut busy: Vec<(u64, u64)> = placed
            .iter()
            .filter(|&&p| alive_together(p, v))
            .map(|&p| (offsets[p], offsets[p].saturating_add(sizes[p])))
            .collect();
        busy.sort_unstable();
        let mut offset = 0u64;
        for (lo, hi) in busy {
            if offset.saturating_add(sizes[v]) <= lo {
                break;
            }
            offset = offset.max(hi);
        }
        offsets[v] = offset;
        placed.push(v);
    }
    let arena = |offsets: &[u64]| {
        offsets
            .iter()
            .zip(sizes)
            .map(|(o, s)| o.saturating_add(*s))
            .max()
            .unwrap_or(0)
    };
    let mut arena_len = arena(&offsets);
    let is_chain = reads
        .iter()
        .enumerate()
        .all(|(k, r)| !r.as_ref().is_empty() && r.as_ref().iter().all(|&i| i == k));
    if is_chain && n >= 2 {
        let bound = sizes
            .windows(2)
            .map(|w| w[0].saturating_add(w[1]))
            .max()
            .unwrap_or(0);
        if arena_len > bound {
            // the input at the front, its output at the back, and so on
            for (v, offset) in offsets.iter_mut().enumerate() {
                *offset = if v % 2 == 0 {
                    0
                } else {
                    bound.saturating_sub(sizes[v])
                };
            }
            arena_len = arena(&offsets);
        }
    }
    Plan {
        offsets,
        arena_len,
        no_reuse_len: sizes.iter().fold(0u64, |a, &s| a.saturating_add(s)),
        layer_by_layer_len: arena_len,
        in_place: std::vec![None; reads.len()],
    }
}

/// Every value's first and last node: value `v > 0` from its writer `v - 1` (value 0 from node
/// 0) to the last node that reads it.
fn lifetimes<R: AsRef<[usize]>>(n: usize, reads: &[R]) -> (Vec<usize>, Vec<usize>) {
    let start: Vec<usize> = (0..n).map(|v| v.saturating_sub(1)).collect();
    let mut end = start.clone();
    for (k, r) in reads.iter().enumerate() {
        for &i in r.as_ref() {
            if let Some(e) = end.get_mut(i) {
                *e = (*e).max(k);
            }
        }
    }
    (start, end)
}

/// One buffer of the in-place planner: a value, a temporary, or the values an in-place chain
/// merges, each piece `(offset in the buffer, size, first node, last node)`.
type Buffer = Vec<(u64, u64, usize, usize)>;

/// Places `buffers` largest (furthest-reaching piece) first, each at the lowest offset where
/// none of its pieces shares a byte with a piece of a placed buffer alive at the same node
/// (ties: the lower index first). Returns the offsets and the end of the last piece. With one
/// piece per buffer this is [`plan`]'s greedy placement.
// Bake-time host code: sizes are blob-sized (below 2^32 each, at most 65 values and as many
// temporaries), so every offset, sum and difference fits u64, i64 and i128.
#[allow(clippy::arithmetic_side_effects)]
#[allow(clippy::indexing_slicing)] // host code: indices below `buffers.len()`
fn place_buffers(buffers: &[Buffer]) -> (Vec<u64>, u64) {
    let extent = |b: &Buffer| b.iter().map(|p| p.0 + p.1).max().unwrap_or(0);
    let mut order: Vec<usize> = (0..buffers.len()).collect();
    order.sort_by(|&a, &b| {
        extent(&buffers[b])
            .cmp(&extent(&buffers[a]))
            .then(a.cmp(&b))
    });
    let mut offsets = std::vec![0u64; buffers.len()];
    let mut placed: Vec<usize> = Vec::new();
    for &v in &order {
        // the offsets `x` at which piece `p` would meet a placed piece `q`:
        // `q.lo - p.at - p.size < x < q.hi - p.at`
        let mut busy: Vec<(i128, i128)> = Vec::new();
        for &(at, size, s, e) in &buffers[v] {
            for &u in &placed {
                for &(q_at, q_size, qs, qe) in &buffers[u] {
                    if qs <= e && s <= qe && size > 0 && q_size > 0 {
                        let lo = i128::from(offsets[u] + q_at);
                        let hi = lo + i128::from(q_size);
                        let (at, size) = (i128::from(at), i128::from(size));
                        busy.push((lo - at - size + 1, hi - at));
                    }
                }
            }
        }
        busy.sort_unstable();
        let mut offset = 0i128;
        for (lo, hi) in busy {
            if offset < lo {
                break;
            }
            offset = offset.max(hi);
        }
        offsets[v] = offset as u64;
        placed.push(v);
    }
    let end = offsets
        .iter()
        .zip(buffers)
        .map(|(o, b)| o + extent(b))
        .max()
        .unwrap_or(0);
    (offsets, end)
}

/// The offsets, in-place nodes and arena of the plan with exactly the nodes of `chosen` in
/// place (each value's lifetime `(start, end)`).
// Bake-time host code: sizes are blob-sized (below 2^32 each, at most 65 values and as many
// temporaries), so every offset, sum and difference fits u64, i64 and i128.
#[allow(clippy::arithmetic_side_effects)]
#[allow(clippy::indexing_slicing)] // host code: indices below `sizes.len()`
fn place_in_place(
    sizes: &[u64],
    (start, end): (&[usize], &[usize]),
    chosen: &[Option<InPlaceOption>],
) -> (Vec<u64>, Vec<Option<InPlace>>, u64) {
    let n = sizes.len();
    // each value's buffer (its own index unless merged) and its offset in it
    let mut buffer: Vec<usize> = (0..n).collect();
    let mut rel: Vec<i64> = std::vec![0; n];
    for (k, c) in chosen.iter().enumerate() {
        if let Some(c) = c {
            buffer[k + 1] = buffer[c.input];
            rel[k + 1] = rel[c.input] - c.input_at as i64;
        }
    }
    let mut low = std::vec![i64::MAX; n];
    for v in 0..n {
        low[buffer[v]] = low[buffer[v]].min(rel[v]);
    }
    let mut buffers: Vec<Buffer> = std::vec![Vec::new(); n];
    for v in 0..n {
        let b = buffer[v];
        buffers[b].push(((rel[v] - low[b]) as u64, sizes[v], start[v], end[v]));
    }
    // the temporaries, alive at their node only
    let mut temps = Vec::new();
    for (k, c) in chosen.iter().enumerate() {
        if let Some(c) = c.filter(|c| c.temp_len > 0) {
            temps.push((k, buffers.len()));
            buffers.push(std::vec![(0, c.temp_len, k, k)]);
        }
    }
    let (placed, arena) = place_buffers(&buffers);
    let offsets = (0..n)
        .map(|v| placed[buffer[v]] + (rel[v] - low[buffer[v]]) as u64)
        .collect();
    let in_place = chosen
        .iter()
        .enumerate()
        .map(|(k, c)| {
            c.map(|c| InPlace {
                input: c.input,
                temp_offset: temps.iter().find(|t| t.0 == k).map_or(0, |t| placed[t.1]),
                temp_len: c.temp_len,
            })
        })
        .collect();
    (offsets, in_place, arena)
}

/// The plan with exactly the nodes of `chosen` in place (`chosen[k]`: how node `k` runs in
/// place, or `None`), placed as [`plan_in_place`] places its choice: for tests and tools that
/// force a choice. Nothing is checked here: [`encode_with_plan`] refuses an unsafe plan with the
/// loader's error (an input still read later, a kind that cannot run in place, ...).
// Bake-time host code: sizes are blob-sized (below 2^32 each, at most 65 values and as many
// temporaries), so every offset, sum and difference fits u64, i64 and i128.
#[allow(clippy::arithmetic_side_effects)]
#[allow(clippy::indexing_slicing)] // host code: indices below `sizes.len()`
pub fn plan_with_nodes_in_place<R: AsRef<[usize]>>(
    sizes: &[u64],
    reads: &[R],
    chosen: &[Option<InPlaceOption>],
) -> Plan {
    let base = plan(sizes, reads);
    let (start, end) = lifetimes(sizes.len(), reads);
    let mut chosen = chosen.to_vec();
    chosen.resize(reads.len(), None);
    for (k, c) in chosen.iter_mut().enumerate() {
        // an input that is no value, or a node writing no value: not in place
        if c.is_some_and(|c| c.input >= sizes.len() || k + 1 >= sizes.len()) {
            *c = None;
        }
    }
    let (offsets, in_place, arena_len) = place_in_place(sizes, (&start, &end), &chosen);
    Plan {
        offsets,
        arena_len,
        no_reuse_len: base.no_reuse_len,
        layer_by_layer_len: base.arena_len,
        in_place,
    }
}

/// [`plan`], with nodes that may write their output over their input's bytes: `options[k]`
/// lists how node `k` can run in place (none, one, or an `Add`'s two operands); the first whose
/// value dies at node `k` is the node's candidate.
///
/// An in-place node's output and the input it overwrites become one buffer at their fixed
/// distance (each keeping its own lifetime inside it, so a strided depthwise layer's smaller
/// output frees the rest of the input's bytes), and its temporary a buffer alive at that node
/// only; the buffers are placed as [`plan`] places values, largest first at the lowest offset
/// where no piece meets a piece alive at the same node. Starting from every
/// candidate in place, each is then taken back in turn if the arena does not grow without it,
/// so that no node runs in place for nothing. The result is this plan if its arena is smaller
/// than [`plan`]'s, else [`plan`]'s own, unchanged: a model where running in place gains nothing
/// keeps its layer-by-layer plan byte for byte.
// Bake-time host code: every index is below `sizes.len()` or `reads.len()` by construction.
// Bake-time host code: sizes are blob-sized (below 2^32 each, at most 65 values and as many
// temporaries), so every offset, sum and difference fits u64, i64 and i128.
#[allow(clippy::arithmetic_side_effects)]
#[allow(clippy::indexing_slicing)]
pub fn plan_in_place<R: AsRef<[usize]>>(
    sizes: &[u64],
    reads: &[R],
    options: &[Vec<InPlaceOption>],
) -> Plan {
    let base = plan(sizes, reads);
    let n = sizes.len();
    let (start, end) = lifetimes(n, reads);
    let candidates: Vec<Option<InPlaceOption>> = (0..reads.len())
        .map(|k| {
            options.get(k).and_then(|o| {
                o.iter().copied().find(|o| {
                    o.input < n
                        && o.input <= k
                        && k + 1 < n
                        && end[o.input] == k
                        && reads[k].as_ref().contains(&o.input)
                        && o.input_at.saturating_add(sizes[o.input]) >= sizes[k + 1]
                })
            })
        })
        .collect();
    if candidates.iter().all(Option::is_none) {
        return base;
    }
    // the plan with the candidates of `on` in place
    let place = |on: &[bool]| {
        let chosen: Vec<Option<InPlaceOption>> = candidates
            .iter()
            .zip(on)
            .map(|(c, &on)| c.filter(|_| on))
            .collect();
        place_in_place(sizes, (&start, &end), &chosen)
    };
    let mut on: Vec<bool> = candidates.iter().map(Option::is_some).collect();
    let mut best = place(&on);
    for k in 0..on.len() {
        if !on[k] {
            continue;
        }
        on[k] = false;
        let trial = place(&on);
        if trial.2 <= best.2 {
            best = trial;
        } else {
            on[k] = true;
        }
    }
    if best.2 >= base.arena_len {
        return base;
    }
    Plan {
        offsets: best.0,
        arena_len: best.2,
        no_reuse_len: base.no_reuse_len,
        layer_by_layer_len: base.arena_len,
        in_place: best.1,
    }
}

fn u32_of(n: impl TryInto<u32>) -> Result<u32, Error> {
    n.try_into().map_err(|_| Error::TooLarge)
}

fn u16_of(n: u32) -> Result<u16, Error> {
    u16::try_from(n).map_err(|_| Error::TooLarge)
}

fn check_len(layer: u16, field: &'static str, found: usize, expected: u64) -> Result<(), Error> {
    if found as u64 == expected {
        Ok(())
    } else {
        Err(Error::SpecLength {
            layer,
            field,
            expected: u32::try_from(expected).unwrap_or(u32::MAX),
            found: u32::try_from(found).unwrap_or(u32::MAX),
        })
    }
}

/// The shape and zero point of every value (`nodes.len() + 1` of them), with the spec's own
/// checks: value ids, vector lengths, input zero points, geometry, and an `Add`'s second input,
/// shapes, weights, multiplier, shift, activation and width.
fn values(spec: &ModelSpec) -> Result<Vec<([u32; 3], i8)>, Error> {
    if spec.nodes.is_empty() {
        return Err(Error::NoLayers);
    }
    if spec.nodes.len() > MAX_LAYERS {
        return Err(Error::TooManyLayers {
            found: u16::try_from(spec.nodes.len()).unwrap_or(u16::MAX),
        });
    }
    let mut values = std::vec![(spec.input_shape, spec.input.zero_point)];
    for (layer, node) in (0u16..).zip(&spec.nodes) {
        let Some(&([h, w, c], zp_in)) = values.get(node.input) else {
            return Err(Error::BadValueId {
                layer,
                value: u16::try_from(node.input).unwrap_or(u16::MAX),
            });
        };
        let volume = u64::from(h)
            .saturating_mul(u64::from(w))
            .saturating_mul(u64::from(c));
        let geometry = Error::BadGeometry { layer };
        let check_zp = |found: i8| {
            if found == zp_in {
                Ok(())
            } else {
                Err(Error::ZeroPointMismatch {
                    layer,
                    expected: zp_in,
                    found,
                })
            }
        };
        let channel_vectors = |n: u32, bias: usize, multipliers: usize, shifts: usize| {
            check_len(layer, "bias", bias, u64::from(n))?;
            check_len(layer, "multipliers", multipliers, u64::from(n))?;
            check_len(layer, "shifts", shifts, u64::from(n))
        };
        let out = match &node.layer {
            LayerSpec::Dense(d) => {
                if u64::from(d.n_inputs) != volume {
                    return Err(Error::ShapeMismatch {
                        layer,
                        expected: u32::try_from(volume).unwrap_or(u32::MAX),
                        found: d.n_inputs,
                    });
                }
                check_len(
                    layer,
                    "weights",
                    d.weights.len(),
                    volume.saturating_mul(u64::from(d.n_outputs)),
                )?;
                channel_vectors(
                    d.n_outputs,
                    d.bias.len(),
                    d.multipliers.len(),
                    d.shifts.len(),
                )?;
                check_zp(d.input_zero_point)?;
                ([1, 1, d.n_outputs], d.output_zero_point)
            }
            LayerSpec::Conv2d(s) | LayerSpec::DepthwiseConv2d(s) => {
                let depthwise = matches!(node.layer, LayerSpec::DepthwiseConv2d(_));
                let same = s.padding == Padding::Same;
                let [kh, kw] = s.kernel.map(u64::from);
                let [sh, sw] = s.stride.map(u64::from);
                let (oh, _) = conv_axis(u64::from(h), kh, sh, same).ok_or(geometry)?;
                let (ow, _) = conv_axis(u64::from(w), kw, sw, same).ok_or(geometry)?;
                if depthwise && s.n_outputs != c {
                    return Err(Error::ShapeMismatch {
                        layer,
                        expected: c,
                        found: s.n_outputs,
                    });
                }
                let taps = kh.saturating_mul(kw).saturating_mul(u64::from(c));
                let n_weights = if depthwise {
                    taps
                } else {
                    taps.saturating_mul(u64::from(s.n_outputs))
                };
                check_len(layer, "weights", s.weights.len(), n_weights)?;
                channel_vectors(
                    s.n_outputs,
                    s.bias.len(),
                    s.multipliers.len(),
                    s.shifts.len(),
                )?;
                check_zp(s.input_zero_point)?;
                ([u32_of(oh)?, u32_of(ow)?, s.n_outputs], s.output_zero_point)
            }
            LayerSpec::MaxPool2d(p) | LayerSpec::AvgPool2d(p) => {
                let [kh, kw] = p.kernel.map(u64::from);
                let [sh, sw] = p.stride.map(u64::from);
                let oh = pool_axis(u64::from(h), kh, sh).ok_or(geometry)?;
                let ow = pool_axis(u64::from(w), kw, sw).ok_or(geometry)?;
                check_zp(p.input_zero_point)?;
                let max_pool = matches!(node.layer, LayerSpec::MaxPool2d(_));
                if max_pool && p.output_zero_point != zp_in {
                    return Err(Error::MaxPoolZeroPoint {
                        layer,
                        input: zp_in,
                        output: p.output_zero_point,
                    });
                }
                ([u32_of(oh)?, u32_of(ow)?, c], p.output_zero_point)
            }
            LayerSpec::Add(a) => {
                let Some(&(other_shape, zp_b)) = values.get(a.other) else {
                    return Err(Error::BadValueId {
                        layer,
                        value: u16::try_from(a.other).unwrap_or(u16::MAX),
                    });
                };
                if other_shape != [h, w, c] {
                    return Err(Error::AddShapes {
                        layer,
                        a: u16::try_from(node.input).unwrap_or(u16::MAX),
                        b: u16::try_from(a.other).unwrap_or(u16::MAX),
                    });
                }
                check_zp(a.input_zero_points[0])?;
                if a.input_zero_points[1] != zp_b {
                    return Err(Error::ZeroPointMismatch {
                        layer,
                        expected: zp_b,
                        found: a.input_zero_points[1],
                    });
                }
                for (operand, &weight) in (0u8..).zip(&a.weights) {
                    if weight.unsigned_abs() > WIDE_ADD_WEIGHT_MAX {
                        return Err(Error::AddWeight {
                            layer,
                            operand,
                            weight,
                        });
                    }
                }
                if !multiplier_is_valid(a.multiplier) {
                    return Err(Error::BadMultiplier {
                        layer,
                        channel: 0,
                        multiplier: a.multiplier,
                    });
                }
                if !shift_is_valid(a.shift) {
                    return Err(Error::BadShift {
                        layer,
                        channel: 0,
                        shift: a.shift,
                    });
                }
                if matches!(a.activation, ActivationSpec::Lut { .. }) {
                    return Err(Error::AddActivation { layer });
                }
                if spec.activations == Activations::Int16 {
                    return Err(Error::Int16Layer { layer });
                }
                ([h, w, c], a.output_zero_point)
            }
        };
        values.push(out);
    }
    Ok(values)
}

/// Whether `layer`, in place with a temporary of `temp_len` bytes, needs format version 7: a
/// convolution other than 1x1 (the plan offers it only where the output keeps the input's
/// shape: row by row), or a depthwise one whose temporary is a ring of pending outputs, not
/// version 6's channel plane.
fn needs_version_7(layer: &LayerSpec, input_shape: [u32; 3], temp_len: u64) -> bool {
    let [h, w, c] = input_shape;
    match layer {
        LayerSpec::Conv2d(s) => s.kernel != [1, 1],
        LayerSpec::DepthwiseConv2d(s) => {
            let plane = u64::from(h).saturating_mul(u64::from(w));
            ring_len(s, input_shape, c).is_some_and(|ring| ring == temp_len && ring != plane)
        }
        _ => false,
    }
}

/// The ring temporary of a depthwise layer over `[h, w, c]` that keeps its shape with stride 1
/// (`top w + left + 1` pixels of `c` bytes), or `None` for another layer.
fn ring_len(s: &ConvSpec, [h, w, c]: [u32; 3], c_out: u32) -> Option<u64> {
    let same = s.padding == Padding::Same;
    let (oh, top) = conv_axis(u64::from(h), u64::from(s.kernel[0]), 1, same)?;
    let (ow, left) = conv_axis(u64::from(w), u64::from(s.kernel[1]), 1, same)?;
    let keeps = s.stride == [1, 1] && oh == u64::from(h) && ow == u64::from(w) && c_out == c;
    let usize_of = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    let shape = [h, w, c].map(|d| d as usize);
    keeps.then(|| inplace::ring_temp_len([usize_of(top), usize_of(left)], shape) as u64)
}

/// The buffer plan [`encode`] writes into the blob for `spec`: [`plan_in_place`] with every
/// node that can run in place as a candidate (a depthwise convolution, a pointwise one, 1x1
/// with stride 1, a shape-keeping one with stride 1, and either operand of an `Add`; int8
/// models only), so the layer-by-layer plan
/// of [`plan_model_layer_by_layer`] unless running some nodes in place lowers the arena.
///
/// Errors: those of [`encode`] that concern the graph (value ids, shapes, vector lengths).
pub fn plan_model(spec: &ModelSpec) -> Result<Plan, Error> {
    let values = values(spec)?;
    let (sizes, reads) = sizes_and_reads(spec, &values);
    let volume = |v: usize| -> u64 { sizes.get(v).copied().unwrap_or(0) };
    let options: Vec<Vec<InPlaceOption>> = spec
        .nodes
        .iter()
        .enumerate()
        .map(|(k, node)| {
            let [h, w, c_in] = values.get(node.input).map_or([0; 3], |v| v.0);
            let c_out = values.get(k.saturating_add(1)).map_or(0, |v| v.0[2]);
            let pixels = u64::from(h).saturating_mul(u64::from(w));
            let option = |input, input_at, temp_len| InPlaceOption {
                input,
                input_at,
                temp_len,
            };
            if spec.activations != Activations::Int8 {
                return Vec::new();
            }
            match &node.layer {
                LayerSpec::DepthwiseConv2d(s) => {
                    let temp = match ring_len(s, [h, w, c_in], c_out) {
                        Some(ring) => ring,
                        None => pixels,
                    };
                    std::vec![option(node.input, 0, temp)]
                }
                LayerSpec::Conv2d(s) if s.kernel == [1, 1] && s.stride == [1, 1] => {
                    let input_at = pixels.saturating_mul(u64::from(c_out.saturating_sub(c_in)));
                    std::vec![option(node.input, input_at, u64::from(c_out))]
                }
                LayerSpec::Conv2d(s) => {
                    // a shape-keeping convolution, row by row over `kh` input rows
                    let dims = |v: [u32; 2]| v.map(|d| d as usize);
                    let shape =
                        |v: usize| values.get(v).map_or([0; 3], |v| v.0.map(|d| d as usize));
                    let (input, output) = (shape(node.input), shape(k.saturating_add(1)));
                    if inplace::is_row_window(dims(s.kernel), dims(s.stride), input, output) {
                        let temp = inplace::row_window_temp_len(dims(s.kernel), input);
                        std::vec![option(node.input, 0, temp as u64)]
                    } else {
                        Vec::new()
                    }
                }
                LayerSpec::Add(a) if volume(node.input) == volume(a.other) => {
                    std::vec![option(node.input, 0, 0), option(a.other, 0, 0)]
                }
                _ => Vec::new(),
            }
        })
        .collect();
    Ok(plan_in_place(&sizes, &reads, &options))
}

/// The layer-by-layer buffer plan of `spec` ([`plan`]): every node's input and output in
/// separate bytes, nothing in place. [`encode_with_plan`] writes it as the blob version that
/// holds the model without version 6.
///
/// Errors: those of [`plan_model`].
pub fn plan_model_layer_by_layer(spec: &ModelSpec) -> Result<Plan, Error> {
    let values = values(spec)?;
    let (sizes, reads) = sizes_and_reads(spec, &values);
    Ok(plan(&sizes, &reads))
}

/// Every value's bytes (int16: two per element, so every offset the planner sums is even) and
/// the values each node reads.
fn sizes_and_reads(spec: &ModelSpec, values: &[([u32; 3], i8)]) -> (Vec<u64>, Vec<Vec<usize>>) {
    let element = spec.activations.element_bytes();
    let sizes: Vec<u64> = values
        .iter()
        .map(|(s, _)| {
            s.iter()
                .fold(element, |a, &d| a.saturating_mul(u64::from(d)))
        })
        .collect();
    let reads: Vec<Vec<usize>> = spec.nodes.iter().map(NodeSpec::reads).collect();
    (sizes, reads)
}

struct Writer(Vec<u8>);

impl Writer {
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn i8(&mut self, v: i8) {
        self.0.push(v as u8);
    }
    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.bytes(&v.to_le_bytes());
    }
    fn zeros(&mut self, n: usize) {
        for _ in 0..n {
            self.0.push(0);
        }
    }

    /// Multipliers, padded shifts, bias, padded weights, optional table.
    fn channel_arrays(
        &mut self,
        multipliers: &[i32],
        shifts: &[u8],
        bias: &[i32],
        weights: &[i8],
        table: Option<&[i8; 256]>,
    ) {
        for &m in multipliers {
            self.i32(m);
        }
        self.bytes(shifts);
        self.zeros(pad4(shifts.len()));
        for &b in bias {
            self.i32(b);
        }
        for &q in weights {
            self.i8(q);
        }
        self.zeros(pad4(weights.len()));
        if let Some(table) = table {
            for &e in table {
                self.i8(e);
            }
        }
    }
}

fn activation(spec: &ActivationSpec) -> (u8, i8, Option<&[i8; 256]>) {
    match spec {
        ActivationSpec::Identity => (ACT_IDENTITY, 0, None),
        ActivationSpec::Relu => (ACT_RELU, 0, None),
        ActivationSpec::Lut {
            pre_zero_point,
            table,
        } => (ACT_LUT, *pre_zero_point, Some(table)),
    }
}

/// Writes `spec` as a blob with its buffer plan ([`plan_model`]: in place where that lowers the
/// arena), then validates it with [`Model::from_bytes`].
///
/// A model with a shape-keeping convolution in place or a depthwise ring is written as format
/// version 7, one with another node in place as version 6, an int8 model with an `Add` as
/// version 5, any other int8 model as version 3 and an int16 model as version 4: the oldest
/// version that holds it.
///
/// Errors: [`Error::NoLayers`], [`Error::TooManyLayers`], [`Error::BadValueId`] for a node that
/// reads a value not yet written (either input of an `Add`), [`Error::AddShapes`],
/// [`Error::AddWeight`], [`Error::AddActivation`] and [`Error::Int16Layer`] for an `Add` whose
/// inputs differ in shape, whose weight exceeds `2^16`, with a table activation or in an int16
/// model, [`Error::SpecLength`] for a vector whose length does not match
/// the shapes, [`Error::ShapeMismatch`] for a dense layer whose input count is not its input
/// value's size (or a depthwise layer whose channels differ), [`Error::BadGeometry`] for a
/// kernel that does not fit, [`Error::ZeroPointMismatch`] for an input zero point that is not
/// its value's, [`Error::TooLarge`] for a blob beyond 4 GiB or a kernel beyond 65535, and any
/// validation error of [`Model::from_bytes`] (multipliers or shifts out of range, an
/// accumulator that could overflow, a bad output scale, ...).
pub fn encode(spec: &ModelSpec) -> Result<Vec<u8>, Error> {
    encode_with_plan(spec, &plan_model(spec)?)
}

/// [`encode`] with the layer-by-layer plan ([`plan_model_layer_by_layer`]): no node in place,
/// the arena every node's input plus output needs, and never format version 6.
///
/// Errors: those of [`encode`].
pub fn encode_layer_by_layer(spec: &ModelSpec) -> Result<Vec<u8>, Error> {
    encode_with_plan(spec, &plan_model_layer_by_layer(spec)?)
}

/// [`encode`] with a given plan (one offset per value, one entry per node), validated with the
/// blob by [`Model::from_bytes`]: an unsafe plan is refused with the loader's error
/// ([`Error::ArenaOverlap`], [`Error::InPlaceOverlap`], ...).
///
/// Errors: those of [`encode`], and [`Error::SpecLength`] for a plan of the wrong size.
pub fn encode_with_plan(spec: &ModelSpec, plan: &Plan) -> Result<Vec<u8>, Error> {
    let bytes = write_blob(spec, plan)?;
    Model::from_bytes(&bytes)?;
    Ok(bytes)
}

/// The blob of `spec` with `plan`, not validated (tests craft unsafe plans with it).
pub(crate) fn write_blob(spec: &ModelSpec, plan: &Plan) -> Result<Vec<u8>, Error> {
    let values = values(spec)?;
    check_len(0, "plan offsets", plan.offsets.len(), values.len() as u64)?;
    check_len(
        0,
        "plan nodes",
        plan.in_place.len(),
        spec.nodes.len() as u64,
    )?;
    let n_nodes = u16::try_from(spec.nodes.len()).map_err(|_| Error::TooLarge)?;
    let size = |v: Option<&([u32; 3], i8)>| -> u64 {
        v.map_or(0, |(s, _)| {
            s.iter().fold(1u64, |a, &d| a.saturating_mul(u64::from(d)))
        })
    };

    let int16 = spec.activations == Activations::Int16;
    let has_add = spec
        .nodes
        .iter()
        .any(|n| matches!(n.layer, LayerSpec::Add(_)));
    let mut w = Writer(Vec::new());
    // header: the oldest version that holds the model, which older runtimes read (an int16
    // model with an Add was refused by `values`)
    w.bytes(&MAGIC);
    let in_place = plan.in_place.iter().any(Option::is_some);
    let version_7 = plan.in_place.iter().zip(&spec.nodes).any(|(p, node)| {
        let input_shape = values.get(node.input).map_or([0; 3], |v| v.0);
        p.is_some_and(|p| needs_version_7(&node.layer, input_shape, p.temp_len))
    });
    // weights past version 5's 2^16: version 8, which older runtimes refuse by its number
    let wide_add = spec.nodes.iter().any(|n| {
        matches!(&n.layer, LayerSpec::Add(a)
            if a.weights.iter().any(|w| w.unsigned_abs() > ADD_WEIGHT_MAX))
    });
    w.u16(if wide_add {
        WIDE_ADD_VERSION
    } else if version_7 {
        SHAPE_KEEPING_VERSION
    } else if in_place {
        IN_PLACE_VERSION
    } else if has_add {
        ADD_VERSION
    } else if int16 {
        INT16_VERSION
    } else {
        INT8_VERSION
    });
    w.u16(n_nodes);
    w.u32(0); // total length, patched below
    w.u32(u32_of(size(values.first()))?);
    w.u32(u32_of(size(values.last()))?);
    w.u32(u32_of(plan.arena_len)?);
    w.u16(n_nodes.checked_add(1).ok_or(Error::TooLarge)?);
    if int16 {
        w.u8(DTYPE_I16);
        w.zeros(HEADER_RESERVED - 1);
    } else {
        w.zeros(HEADER_RESERVED);
    }
    // input stage, and the byte table of a shared entry
    let zp_in = spec.input.zero_point;
    w.u32(u32_of(spec.input.features.len())?);
    w.i8(zp_in);
    if spec.input.frac_bits > crate::blob::MAX_INPUT_FRAC_BITS {
        return Err(Error::InputFracBits {
            found: spec.input.frac_bits,
        });
    }
    w.u8(spec.input.frac_bits);
    w.zeros(2);
    for f in &spec.input.features {
        w.i32(f.offset);
        w.i32(f.multiplier);
        w.u8(f.shift);
        w.zeros(3);
    }
    if let [f] = spec.input.features.as_slice() {
        for raw in 0..=255 {
            if int16 {
                let entry = [
                    f.offset.to_le_bytes(),
                    f.multiplier.to_le_bytes(),
                    [f.shift, 0, 0, 0],
                ]
                .concat();
                w.bytes(&affine16_at(&entry, 0, raw).to_le_bytes());
            } else {
                w.i8(affine(
                    raw,
                    (f.offset, f.multiplier, f.shift),
                    i64::from(zp_in),
                ));
            }
        }
    }
    // value table
    for ((shape, zp), &offset) in values.iter().zip(&plan.offsets) {
        for &d in shape {
            w.u32(d);
        }
        w.u32(u32_of(offset)?);
        w.i8(*zp);
        if int16 {
            w.u8(DTYPE_I16);
            w.zeros(2);
        } else {
            w.zeros(3);
        }
    }
    // nodes
    for (k, node) in spec.nodes.iter().enumerate() {
        let (kind, act, padding, kernel, stride) = match &node.layer {
            LayerSpec::Dense(d) => (KIND_DENSE, &d.activation, PAD_VALID, [0, 0], [0, 0]),
            LayerSpec::Conv2d(s) | LayerSpec::DepthwiseConv2d(s) => (
                if matches!(node.layer, LayerSpec::Conv2d(_)) {
                    KIND_CONV2D
                } else {
                    KIND_DEPTHWISE
                },
                &s.activation,
                if s.padding == Padding::Same {
                    PAD_SAME
                } else {
                    PAD_VALID
                },
                s.kernel,
                s.stride,
            ),
            LayerSpec::MaxPool2d(p) => (
                KIND_MAX_POOL,
                &ActivationSpec::Identity,
                PAD_VALID,
                p.kernel,
                p.stride,
            ),
            LayerSpec::AvgPool2d(p) => (
                KIND_AVG_POOL,
                &ActivationSpec::Identity,
                PAD_VALID,
                p.kernel,
                p.stride,
            ),
            LayerSpec::Add(a) => (KIND_ADD, &a.activation, PAD_VALID, [0, 0], [0, 0]),
        };
        let (act, pre_zero_point, table) = activation(act);
        let arrays = match &node.layer {
            LayerSpec::Dense(d) => {
                channel_arrays_len(d.n_outputs as usize, d.weights.len(), table.is_some())
            }
            LayerSpec::Conv2d(s) | LayerSpec::DepthwiseConv2d(s) => {
                channel_arrays_len(s.n_outputs as usize, s.weights.len(), table.is_some())
            }
            LayerSpec::MaxPool2d(_) => 0,
            LayerSpec::AvgPool2d(_) => 8,
            LayerSpec::Add(_) => ADD_ARRAYS_LEN,
        };
        w.u8(kind);
        w.u8(act);
        w.i8(pre_zero_point);
        w.u8(padding);
        w.u16(u16_of(u32_of(node.input)?)?);
        match node.layer.other_input() {
            Some(other) => w.u16(u16_of(u32_of(other)?)?),
            None => w.u16(NO_VALUE),
        }
        w.u16(u16_of(u32_of(k.saturating_add(1))?)?);
        // byte 10: in place (version 6), byte 11 reserved
        let temp = plan.in_place.get(k).copied().flatten();
        w.u8(u8::from(temp.is_some()));
        w.u8(0);
        for d in kernel.iter().chain(&stride) {
            w.u16(u16_of(*d)?);
        }
        let trailer = if temp.is_some() { TEMP_LEN } else { 0 };
        w.u32(u32_of(
            NODE_HEADER_LEN
                .saturating_add(arrays)
                .saturating_add(trailer),
        )?);
        match &node.layer {
            LayerSpec::Dense(d) => {
                w.channel_arrays(&d.multipliers, &d.shifts, &d.bias, &d.weights, table)
            }
            LayerSpec::Conv2d(s) | LayerSpec::DepthwiseConv2d(s) => {
                w.channel_arrays(&s.multipliers, &s.shifts, &s.bias, &s.weights, table)
            }
            LayerSpec::MaxPool2d(_) => {}
            LayerSpec::AvgPool2d(p) => {
                w.i32(p.multiplier);
                w.u8(p.shift);
                w.zeros(3);
            }
            LayerSpec::Add(a) => {
                w.i32(a.weights[0]);
                w.i32(a.weights[1]);
                w.i32(a.multiplier);
                w.u8(a.shift);
                w.zeros(3);
            }
        }
        if let Some(temp) = temp {
            w.u32(u32_of(temp.temp_offset)?);
            w.u32(u32_of(temp.temp_len)?);
        }
    }
    // output
    w.u32(spec.output_scale.to_bits());
    w.i8(spec.output_zero_point);
    w.zeros(3);
    // total length and CRC
    let mut bytes = w.0;
    let total = u32_of(bytes.len().checked_add(4).ok_or(Error::TooLarge)?)?;
    if let Some(field) = bytes.get_mut(8..12) {
        field.copy_from_slice(&total.to_le_bytes());
    }
    let crc = crc32(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    Ok(bytes)
}
