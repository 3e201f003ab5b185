//! The per-core figures `kiln inspect` and `kiln fit` size a model by: what `cargo xtask
//! firmware` measured in QEMU (kiln-runtime's code, the `Model` value, the inference stack)
//! and the per-layer instruction model `cargo xtask calibrate` fitted, from the committed
//! `device_figures.json`.

use anyhow::Result;

/// The per-core figures: instructions per MAC and per input feature measured in QEMU, and
/// kiln-runtime's code, the `Model` value and the inference stack on each core. One committed
/// file, so `cargo xtask firmware --update-figures` can rewrite the memory figures without
/// touching this code; its "source" field says how and when each was measured.
pub(crate) const DEVICE_FIGURES_JSON: &str = include_str!("device_figures.json");

/// The `--core` names and the `core` each stands for in `device_figures.json`.
pub const CORE_NAMES: [(&str, &str); 5] = [
    ("cortex-m0", "Cortex-M0"),
    ("cortex-m3", "Cortex-M3"),
    ("cortex-m4f", "Cortex-M4F"),
    ("cortex-m7", "Cortex-M7"),
    ("rv32imc", "RISC-V rv32imc"),
];

/// The figures' core name for a `--core` name, case-insensitive.
pub fn core_by_name(name: &str) -> Option<&'static str> {
    CORE_NAMES
        .iter()
        .find(|(cli, _)| cli.eq_ignore_ascii_case(name.trim()))
        .map(|&(_, core)| core)
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct DeviceFigures {
    pub(crate) source: String,
    pub(crate) cores: Vec<CoreFigures>,
}

/// One core's figures, as measured by `cargo xtask firmware`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct CoreFigures {
    pub(crate) core: String,
    pub(crate) qemu_machine: String,
    pub(crate) target: String,
    pub(crate) kernel: String,
    /// The network (int8 input to int8 logits, every layer) divided by its MACs.
    pub(crate) insns_per_mac: f64,
    /// The input stage (raw values to int8) divided by the input features.
    pub(crate) insns_per_input: f64,
    pub(crate) runtime_text_bytes: RuntimeText,
    pub(crate) model_struct_bytes: u64,
    pub(crate) inference_stack_bytes: InferenceStack,
    /// Whether the core's dense kernel takes the fast workspace (`Model::fast_scratch_len`):
    /// the packed SMLAD kernel of Cortex-M4/M7 widens each layer's input into it once. The
    /// instruction figures are measured with it.
    pub(crate) dense_workspace: bool,
    /// The per-layer instruction model of an MLP (`cargo xtask calibrate`).
    pub(crate) estimate: EstimateModel,
}

/// Instructions of one `Model::run` of an MLP on a core, per part of the work: least-squares
/// coefficients over `kiln sim` counts of calibration MLPs (`cargo xtask calibrate --update`).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct EstimateModel {
    /// Per MAC of a whole block of four output rows.
    pub(crate) block_mac: f64,
    /// Per MAC of the rows after the last whole block (and of every row where blocks need
    /// inputs in groups of `block_inputs_multiple` and the layer has not).
    pub(crate) tail_mac: f64,
    /// Per output row (bias, output stage, store).
    pub(crate) row: f64,
    /// Per input of each row past its last group of 8.
    pub(crate) ragged_input: f64,
    /// Per layer (decoding the node, widening the input).
    pub(crate) layer: f64,
    /// Per inference (the call, the checks, the output).
    pub(crate) inference: f64,
    /// The input count a layer needs for the block kernel (8 on Cortex-M4/M7, else 1).
    pub(crate) block_inputs_multiple: usize,
    /// The input stage per loop: `[per feature, fixed]` instructions.
    pub(crate) byte_table: [f64; 2],
    pub(crate) identity: [f64; 2],
    pub(crate) fixed_point: [f64; 2],
    pub(crate) per_feature: [f64; 2],
    /// The layer graph's kernels (convolutions, pooling); dense layers in a graph take the
    /// terms above.
    pub(crate) graph: GraphEstimate,
}

/// Instructions of a layer graph's convolution and pooling layers, fitted to `kiln sim` counts
/// of calibration CNNs after their dense layers are taken out by the MLP terms.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct GraphEstimate {
    /// `Conv2d` runs like a dense layer per output pixel over its im2col column (`kh kw c`
    /// values) into `oc` channels: per MAC of whole blocks of four channels (where the column
    /// takes the block kernel), per MAC of the other channels, per output value, per column
    /// value past its last group of 8 per channel, per output pixel (gathering the column),
    /// per layer.
    pub(crate) conv_block_mac: f64,
    pub(crate) conv_tail_mac: f64,
    pub(crate) conv_output: f64,
    pub(crate) conv_ragged: f64,
    pub(crate) conv_pixel: f64,
    pub(crate) conv_layer: f64,
    /// `DepthwiseConv2d`: per MAC, per output pixel, per layer (the calibration's are all 3x3,
    /// where a per-output term is a ninth of the per-MAC one).
    pub(crate) depthwise_mac: f64,
    pub(crate) depthwise_pixel: f64,
    pub(crate) depthwise_layer: f64,
    /// Pooling: per window tap (max and average), per output value, per layer.
    pub(crate) max_pool_tap: f64,
    pub(crate) avg_pool_tap: f64,
    pub(crate) pool_output: f64,
    pub(crate) pool_layer: f64,
    /// Per inference of a graph (in place of the MLP's `inference`).
    pub(crate) inference: f64,
}

impl EstimateModel {
    /// The network's instructions: every dense layer `(n_in, n_out)` plus the fixed cost.
    pub(crate) fn network(&self, layers: &[(usize, usize)]) -> f64 {
        let per_layer = |&(n_in, n_out): &(usize, usize)| {
            let blocked = n_in % self.block_inputs_multiple.max(1) == 0;
            let block_rows = if blocked { n_out - n_out % 4 } else { 0 };
            (n_in * block_rows) as f64 * self.block_mac
                + (n_in * (n_out - block_rows)) as f64 * self.tail_mac
                + n_out as f64 * self.row
                + ((n_in % 8) * n_out) as f64 * self.ragged_input
                + self.layer
        };
        layers.iter().map(per_layer).sum::<f64>() + self.inference
    }

    /// The network's instructions for a layer graph: each layer by its kind and shapes.
    pub(crate) fn graph_network(&self, layers: &[Geometry]) -> f64 {
        use kiln_runtime::LayerKind;
        let g = &self.graph;
        let per_layer = |l: &Geometry| {
            let [oh, ow, oc] = l.output;
            let [kh, kw] = l.kernel;
            let pixels = (oh * ow) as f64;
            let outputs = pixels * oc as f64;
            let taps = (kh * kw) as f64;
            match l.kind {
                LayerKind::Dense => {
                    let n_in = l.input.iter().product::<usize>();
                    self.network(&[(n_in, oc)]) - self.inference
                }
                LayerKind::Conv2d => {
                    let column = kh * kw * l.input[2];
                    let blocked = column % self.block_inputs_multiple.max(1) == 0;
                    let block_channels = if blocked { oc - oc % 4 } else { 0 };
                    pixels * (column * block_channels) as f64 * g.conv_block_mac
                        + pixels * (column * (oc - block_channels)) as f64 * g.conv_tail_mac
                        + outputs * g.conv_output
                        + pixels * ((column % 8) * oc) as f64 * g.conv_ragged
                        + pixels * g.conv_pixel
                        + g.conv_layer
                }
                LayerKind::DepthwiseConv2d => {
                    outputs * taps * g.depthwise_mac
                        + pixels * g.depthwise_pixel
                        + g.depthwise_layer
                }
                LayerKind::MaxPool2d => {
                    outputs * taps * g.max_pool_tap + outputs * g.pool_output + g.pool_layer
                }
                LayerKind::AvgPool2d => {
                    outputs * taps * g.avg_pool_tap + outputs * g.pool_output + g.pool_layer
                }
                // Not measured on a device yet: each element is two products and one
                // requantization, which a pooled output's cost stands in for.
                LayerKind::Add => outputs * g.pool_output + g.pool_layer,
            }
        };
        layers.iter().map(per_layer).sum::<f64>() + g.inference
    }

    /// The input stage's instructions for `n_inputs` features through `stage`'s loop.
    pub(crate) fn input_stage(&self, stage: kiln_runtime::InputStage, n_inputs: usize) -> f64 {
        use kiln_runtime::InputStage;
        let [per_feature, fixed] = match stage {
            InputStage::ByteTable => self.byte_table,
            InputStage::Identity => self.identity,
            InputStage::FixedPoint => self.fixed_point,
            InputStage::PerFeature => self.per_feature,
        };
        per_feature * n_inputs as f64 + fixed
    }
}

/// kiln-runtime's `.text` in a firmware: dense layers only, the same with the runtime's
/// `small` feature (compact kernels, same output bits), and every layer kind.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct RuntimeText {
    pub(crate) mlp: u64,
    pub(crate) mlp_small: u64,
    pub(crate) graph: u64,
}

/// The peak stack of one inference, for the dense-only and the every-layer firmware.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct InferenceStack {
    pub(crate) mlp: u64,
    pub(crate) graph: u64,
}

/// Parses the figures and checks what the report relies on: every `--core` name has a row and
/// every figure is above 0 (a 0 would make a model fit that does not).
pub(crate) fn parse_figures(text: &str) -> Result<DeviceFigures, String> {
    let figures: DeviceFigures = serde_json::from_str(text).map_err(|e| e.to_string())?;
    for core in &figures.cores {
        let rates = [core.insns_per_mac, core.insns_per_input];
        let bytes = [
            core.runtime_text_bytes.mlp,
            core.runtime_text_bytes.mlp_small,
            core.runtime_text_bytes.graph,
            core.model_struct_bytes,
            core.inference_stack_bytes.mlp,
            core.inference_stack_bytes.graph,
        ];
        if rates.iter().any(|r| !(r.is_finite() && *r > 0.0)) || bytes.contains(&0) {
            return Err(format!("{}: every figure must be above 0", core.core));
        }
    }
    for (cli, core) in CORE_NAMES {
        if !figures.cores.iter().any(|c| c.core == core) {
            return Err(format!("no core '{core}' (--core {cli})"));
        }
    }
    Ok(figures)
}

/// The figures, parsed once.
pub(crate) fn device_figures() -> Result<&'static DeviceFigures> {
    static FIGURES: std::sync::OnceLock<Result<DeviceFigures, String>> = std::sync::OnceLock::new();
    FIGURES
        .get_or_init(|| parse_figures(DEVICE_FIGURES_JSON))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("the device figures built into kiln are invalid: {e}"))
}

/// A layer of a layer graph as the instruction estimate weighs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub(crate) kind: kiln_runtime::LayerKind,
    pub(crate) input: [usize; 3],
    pub(crate) output: [usize; 3],
    pub(crate) kernel: [usize; 2],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_device_figures_parse_and_are_sane() {
        let figures = device_figures().expect("device_figures.json parses and passes its checks");
        assert!(!figures.source.trim().is_empty());
        assert_eq!(figures.cores.len(), 5);
        for core in &figures.cores {
            assert!(
                core.insns_per_mac > 0.0 && core.insns_per_input > 0.0,
                "{core:?}"
            );
            let text = &core.runtime_text_bytes;
            let stack = &core.inference_stack_bytes;
            for bytes in [
                text.mlp,
                text.mlp_small,
                text.graph,
                core.model_struct_bytes,
            ] {
                assert!(bytes > 0, "{core:?}");
            }
            assert!(stack.mlp > 0 && stack.graph > 0, "{core:?}");
            // The compact kernels are smaller, and every layer kind is more code.
            assert!(
                text.mlp_small <= text.mlp && text.mlp <= text.graph,
                "{core:?}"
            );
            for name in [&core.qemu_machine, &core.target, &core.kernel] {
                assert!(!name.is_empty(), "{core:?}");
            }
        }
        // Every --core name has its row.
        for (cli, core) in CORE_NAMES {
            assert_eq!(core_by_name(&cli.to_uppercase()), Some(core));
            assert!(figures.cores.iter().any(|c| c.core == core), "{core}");
        }
        assert_eq!(core_by_name("cortex-m33"), None);
    }

    #[test]
    fn bad_figures_are_an_error_not_a_panic() {
        let good: serde_json::Value = serde_json::from_str(DEVICE_FIGURES_JSON).unwrap();
        let mut zero = good.clone();
        zero["cores"][2]["runtime_text_bytes"]["graph"] = 0.into();
        assert!(parse_figures(&zero.to_string())
            .unwrap_err()
            .contains("Cortex-M4F"));
        let mut missing = good.clone();
        missing["cores"].as_array_mut().unwrap().pop();
        assert!(parse_figures(&missing.to_string())
            .unwrap_err()
            .contains("rv32imc"));
        assert!(parse_figures("{").is_err());
        assert!(parse_figures(r#"{"source": "x"}"#).is_err());
    }
}
