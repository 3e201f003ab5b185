//! The search space of `kiln fit`: the MLP and CNN families, each candidate sized by
//! `kiln inspect`'s own footprint model before anything is trained, and judged against the
//! budgets.

use super::{Candidate, Status};
use crate::cli::config::FitPlan;
use crate::cli::inspect::{self, CoreCost, DenseCandidate};
use crate::data::{Normalization, NormalizationKind, Split};
use crate::nn::Activation;
use crate::{quant, train};
use anyhow::{Context, Result};
use std::path::Path;

/// The grid of first-layer widths every family is tried at.
pub(super) const WIDTHS: [usize; 14] = [4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512];
/// The widest first layer the search for a family's widest fitting member considers.
pub(super) const MAX_WIDTH: usize = 4096;
/// The narrowest hidden layer.
pub(super) const MIN_WIDTH: usize = 2;

/// The shape families: each hidden layer's width is the first's divided by these.
pub(super) const FAMILIES: [&[usize]; 5] = [&[], &[1], &[1, 2], &[1, 4], &[1, 2, 4]];

/// The channel counts of a CNN family's first convolution.
pub(super) const CHANNELS: [usize; 8] = [2, 4, 6, 8, 12, 16, 24, 32];
/// The widest first convolution the edge search considers.
pub(super) const MAX_CHANNELS: usize = 256;
/// The calibration samples that size an untrained CNN (the blob's length and plan do not
/// depend on its ranges).
pub(super) const SIZING_CALIB_SAMPLES: usize = 16;

/// A CNN family: its hidden layers for `c` channels in the first convolution.
pub(super) struct CnnFamily {
    /// The hidden convolution layers (each 3x3 and followed by 2x2 max pooling): channels as
    /// multiples of `c`.
    pub(super) convs: &'static [usize],
    /// A dense layer of `dense * c` units before the output layer (0: none).
    pub(super) dense: usize,
}

pub(super) const CNN_FAMILIES: [CnnFamily; 4] = [
    CnnFamily {
        convs: &[1],
        dense: 0,
    },
    CnnFamily {
        convs: &[1],
        dense: 2,
    },
    CnnFamily {
        convs: &[1, 2],
        dense: 0,
    },
    CnnFamily {
        convs: &[1, 2],
        dense: 2,
    },
];

impl CnnFamily {
    /// The `--layers` text of the family's member with `c` channels; `None` when the image is
    /// too small to pool that often (each pooling needs an even side of at least 2).
    pub(super) fn layers(&self, c: usize, shape: crate::nn::shape::Shape) -> Option<String> {
        let (mut h, mut w) = (shape.h, shape.w);
        let mut parts = Vec::new();
        for &multiple in self.convs {
            if h < 2 || w < 2 || h % 2 != 0 || w % 2 != 0 {
                return None;
            }
            parts.push(format!("conv3x3:{}", c * multiple));
            parts.push("maxpool2".to_owned());
            (h, w) = (h / 2, w / 2);
        }
        if self.dense > 0 {
            parts.push(format!("dense:{}", c * self.dense));
        }
        Some(parts.join(","))
    }
}

/// What the data fixes about every candidate's input.
pub(super) struct InputFacts {
    /// The image shape CNN candidates take (`--input-shape`, or the data's own); `None`:
    /// MLPs only.
    pub(super) image: Option<crate::nn::shape::Shape>,
    pub(super) n_inputs: usize,
    pub(super) n_outputs: usize,
    pub(super) per_feature: bool,
    pub(super) stage: kiln_runtime::InputStage,
    pub(super) byte_input: bool,
}

impl InputFacts {
    /// What `plan`'s data and normalization give every candidate.
    pub(super) fn of(plan: &FitPlan, split: &Split) -> Result<Self> {
        let normalization = Normalization::fit(plan.train.normalization, &split.train);
        let stage = quant::input_stage_for(&normalization, &split.train, plan.calib)
            .context("cannot decide the input stage")?;
        // Bytes only when every value is one: other integers need the i32 input.
        let byte_input = stage == kiln_runtime::InputStage::ByteTable
            && [&split.train, &split.test].iter().all(|d| {
                d.features
                    .iter()
                    .all(|&x| x.fract() == 0.0 && (0.0..=255.0).contains(&x))
            });
        let image = crate::cli::commands::image_shape(
            plan.input_shape,
            &plan.data_spec,
            split.train.n_features,
        )?
        .filter(|_| plan.cnn);
        Ok(Self {
            image,
            n_inputs: split.train.n_features,
            n_outputs: split.train.n_outputs(),
            per_feature: plan.train.normalization == NormalizationKind::Standardize,
            stage,
            byte_input,
        })
    }
}

/// `784-32-16-10`: the inputs, the hidden widths, the outputs.
pub(super) fn label_of(n_inputs: usize, hidden: &[usize], n_outputs: usize) -> String {
    std::iter::once(n_inputs)
        .chain(hidden.iter().copied())
        .chain(std::iter::once(n_outputs))
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join("-")
}

/// Sizes one candidate and judges it against the budgets.
pub(super) fn size(plan: &FitPlan, input: &InputFacts, hidden: &[usize]) -> Result<Candidate> {
    let activation = plan.train.activation;
    let layers: Vec<(usize, Activation)> = hidden
        .iter()
        .map(|&w| (w, activation))
        .chain(std::iter::once((
            input.n_outputs,
            plan.train.output_activation,
        )))
        .collect();
    let cost = inspect::dense_cost(
        &DenseCandidate {
            n_inputs: input.n_inputs,
            layers: &layers,
            per_feature_input: input.per_feature,
            input_stage: input.stage,
            byte_input: input.byte_input,
        },
        plan.core,
    )?;
    Ok(judge(
        plan,
        label_of(input.n_inputs, hidden, input.n_outputs),
        hidden.to_vec(),
        None,
        cost,
    ))
}

/// A sized candidate against the budgets.
pub(super) fn judge(
    plan: &FitPlan,
    label: String,
    hidden: Vec<usize>,
    layers: Option<String>,
    cost: CoreCost,
) -> Candidate {
    let mut over = Vec::new();
    if let Some(budget) = plan.flash_budget.filter(|&b| cost.flash_bytes > b) {
        over.push(format!("flash {} > {budget}", cost.flash_bytes));
    }
    if let Some(budget) = plan.ram_budget.filter(|&b| cost.ram_bytes > b) {
        over.push(format!("RAM {} > {budget}", cost.ram_bytes));
    }
    if let Some(budget) = plan.instruction_budget.filter(|&b| cost.instructions > b) {
        over.push(format!(
            "{} instructions > {budget} (--latency {})",
            cost.instructions,
            plan.latency_text.as_deref().unwrap_or("")
        ));
    }
    let latency_seconds = plan
        .clock_hz
        .map(|hz| cost.instructions as f64 * plan.cycles_per_instruction / hz);
    let fits = over.is_empty();
    Candidate {
        label,
        hidden,
        layers,
        cost,
        latency_seconds,
        fits,
        over,
        status: if fits {
            Status::Pending
        } else {
            Status::DoesNotFit
        },
        result: None,
        winner: false,
    }
}

/// Sizes a CNN exactly: bakes it untrained (random weights, a few calibration samples) and
/// sizes the blob as `kiln inspect` does. `None` when the layers do not apply to the shape.
pub(super) fn size_cnn(
    plan: &FitPlan,
    input: &InputFacts,
    split: &Split,
    shape: crate::nn::shape::Shape,
    layers: &str,
) -> Result<Option<Candidate>> {
    let config = cnn_config(plan, shape, layers)?;
    let model = match train::untrained(split, &plan.data_spec, &plan.data_options, &config) {
        Ok(model) => model,
        Err(train::TrainError::Config(_)) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let options = quant::QuantOptions {
        calib_samples: SIZING_CALIB_SAMPLES,
        ..plan.calib
    };
    let quantized = quant::quantize(&model, &split.train, options)
        .with_context(|| format!("cannot size the CNN {layers}"))?;
    let cost = inspect::blob_cost(
        Path::new(layers),
        &quantized.blob,
        plan.core,
        Some(input.byte_input),
    )?;
    let label = format!(
        "{}x{}x{}-{}-{}",
        shape.h,
        shape.w,
        shape.c,
        layers.replace(',', "-"),
        input.n_outputs
    );
    Ok(Some(judge(
        plan,
        label,
        Vec::new(),
        Some(layers.to_owned()),
        cost,
    )))
}

/// The training configuration of a CNN candidate.
pub(super) fn cnn_config(
    plan: &FitPlan,
    shape: crate::nn::shape::Shape,
    layers: &str,
) -> Result<train::TrainConfig> {
    let specs = crate::nn::layer_spec::parse_layers(layers)
        .map_err(|e| anyhow::anyhow!("the search built bad layers {layers:?}: {e}"))?;
    Ok(train::TrainConfig {
        hidden: Vec::new(),
        layers: specs,
        input_shape: Some(shape),
        ..plan.train.clone()
    })
}

/// The hidden widths of `family` with first width `width`; `None` when a layer would be
/// narrower than [`MIN_WIDTH`].
pub(super) fn family_widths(family: &[usize], width: usize) -> Option<Vec<usize>> {
    family
        .iter()
        .map(|&divisor| Some(width / divisor).filter(|&w| w >= MIN_WIDTH))
        .collect()
}

/// Every candidate of the search space, sized, in a fixed order (family, then width).
pub(super) fn enumerate(
    plan: &FitPlan,
    input: &InputFacts,
    split: &Split,
) -> Result<Vec<Candidate>> {
    let mut candidates: Vec<Candidate> = Vec::new();
    let add = |candidate: Candidate, candidates: &mut Vec<Candidate>| {
        if !candidates
            .iter()
            .any(|c| c.hidden == candidate.hidden && c.layers == candidate.layers)
        {
            candidates.push(candidate);
        }
    };
    for family in FAMILIES
        .iter()
        .filter(|f| f.len() <= plan.max_hidden_layers)
    {
        let size_at = |width: usize| -> Result<Option<Candidate>> {
            family_widths(family, width)
                .map(|hidden| size(plan, input, &hidden))
                .transpose()
        };
        if family.is_empty() {
            add(size(plan, input, &[])?, &mut candidates);
            continue;
        }
        for &width in &WIDTHS {
            if let Some(candidate) = size_at(width)? {
                add(candidate, &mut candidates);
            }
        }
        // The family's widest member that fits: the budget's edge, which the grid misses.
        let smallest = family.iter().max().copied().unwrap_or(1) * MIN_WIDTH;
        if let Some(widest) = widest_fitting(smallest, MAX_WIDTH, size_at)? {
            add(widest, &mut candidates);
        }
    }
    let Some(shape) = input.image else {
        return Ok(candidates);
    };
    for family in CNN_FAMILIES
        .iter()
        .filter(|f| f.convs.len() + usize::from(f.dense > 0) <= plan.max_hidden_layers)
    {
        let size_at = |channels: usize| -> Result<Option<Candidate>> {
            match family.layers(channels, shape) {
                Some(layers) => size_cnn(plan, input, split, shape, &layers),
                None => Ok(None),
            }
        };
        for &channels in &CHANNELS {
            if let Some(candidate) = size_at(channels)? {
                add(candidate, &mut candidates);
            }
        }
        if let Some(widest) = widest_fitting(1, MAX_CHANNELS, size_at)? {
            add(widest, &mut candidates);
        }
    }
    Ok(candidates)
}

/// The widest member (from `smallest` to `largest`) that fits, by bisection (every cost grows
/// with the width) and then a step down past any small non-monotone step of the instruction
/// estimate. `size_at` sizes a member, `None` when the width does not apply.
pub(super) fn widest_fitting(
    smallest: usize,
    largest: usize,
    size_at: impl Fn(usize) -> Result<Option<Candidate>>,
) -> Result<Option<Candidate>> {
    let fits = |width: usize| -> Result<Option<Candidate>> {
        Ok(size_at(width)?.filter(|candidate| candidate.fits))
    };
    if fits(smallest)?.is_none() {
        return Ok(None);
    }
    let (mut lo, mut hi) = (smallest, largest + 1);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid)?.is_some() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    for width in (smallest..=lo).rev() {
        if let Some(candidate) = fits(width)? {
            return Ok(Some(candidate));
        }
    }
    Ok(None)
}
