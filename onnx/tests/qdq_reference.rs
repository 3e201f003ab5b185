//! Proves what the int8 QDQ graph computes.
//!
//! The interpreter in `common/mod.rs` runs the exported graph with the ONNX
//! definitions of QuantizeLinear (f32 division, round half to even,
//! saturation) and DequantizeLinear (per tensor and per axis). Its int8
//! tensors are compared with an independent integer computation written from
//! `docs/quantization.md` (exact i32 accumulators, the Q0.31 requantization
//! `rq`, 256-entry activation tables built in f64, the integer input map):
//!
//! - with power-of-two scales every dequantized value, product, sum and
//!   division is exact in f32, so float and integer must agree bit for bit;
//! - with general scales they must agree within one step at every stage.

mod common;

use std::collections::HashMap;
use std::fmt::Write as _;

use common::int8::{effective, multiplier, rq, sat8, table, Coverage};
use common::{evaluate, Tensor};
use kiln_onnx::builder::{attr_int, Dim, GraphBuilder, Producer};
use kiln_onnx::mlp::{
    decode_model, encode_model, write_model_atomic, Activation, InputNormalization,
    MlpExportOptions,
};
use kiln_onnx::proto::{tensor_proto::DataType, ModelProto};
use kiln_onnx::qdq::{qdq_mlp_to_model, QdqActivation, QdqLayer, QdqMlp, QuantParams};

// ---------------------------------------------------------------------------
// The integer model of docs/quantization.md, independent of the graph
// (its primitives, `rq`, `sat8`, the tables, are in common/int8.rs).
// ---------------------------------------------------------------------------

/// The input map: `q_in[j] = sat8(zp_in + rq(256 * x[j] - mu[j], M_in[j], t_in[j]))`.
fn kernel_input(mlp: &QdqMlp, raw: &[i32], coverage: &mut Coverage) -> Vec<i8> {
    raw.iter()
        .enumerate()
        .map(|(j, &x)| {
            let (mean, inv_std) = match &mlp.normalization {
                InputNormalization::None => (0.0, 1.0),
                InputNormalization::Scale { scale } => (0.0, *scale),
                InputNormalization::Standardize { mean, inv_std } => (mean[j], inv_std[j]),
            };
            let mu = (256.0 * f64::from(mean)).round_ties_even() as i64;
            let (m, t) = multiplier(f64::from(inv_std) / (256.0 * f64::from(mlp.input.scale)));
            let x = i64::from(x).clamp(-(1 << 23), (1 << 23) - 1);
            let v = rq(256 * x - mu, m, t, coverage) + i64::from(mlp.input.zero_point);
            sat8(v, coverage)
        })
        .collect()
}

/// One layer's int8 results for one row.
#[derive(Debug, Clone, PartialEq)]
struct LayerOut {
    /// The table index, for table activations.
    pre: Option<Vec<i8>>,
    output: Vec<i8>,
}

/// One dense layer: exact i32 accumulators, then requantization, clamp or
/// table.
fn kernel_layer(
    layer: &QdqLayer,
    input: QuantParams,
    q_in: &[i8],
    coverage: &mut Coverage,
) -> LayerOut {
    let lut = match &layer.activation {
        QdqActivation::Table { function, pre } => Some(table(*function, *pre, layer.output)),
        _ => None,
    };
    let zp_out = i64::from(layer.output.zero_point);
    let mut pre_values = Vec::new();
    let output = (0..layer.n_outputs)
        .map(|o| {
            let row = &layer.weights[o * layer.n_inputs..(o + 1) * layer.n_inputs];
            let acc = row
                .iter()
                .zip(q_in)
                .fold(i64::from(layer.bias[o]), |acc, (&w, &q)| {
                    acc + i64::from(w) * (i64::from(q) - i64::from(input.zero_point))
                });
            assert!(i32::try_from(acc).is_ok(), "accumulator {acc} leaves i32");
            let s_w = layer.weight_scales[o];
            match &layer.activation {
                QdqActivation::Identity | QdqActivation::Relu => {
                    let (m, t) = effective(input.scale, s_w, layer.output.scale);
                    let y = sat8(zp_out + rq(acc, m, t, coverage), coverage);
                    if layer.activation == QdqActivation::Relu && i64::from(y) < zp_out {
                        coverage.relu_clamped += 1;
                        zp_out as i8
                    } else {
                        y
                    }
                }
                QdqActivation::Table { pre, .. } => {
                    let (m, t) = effective(input.scale, s_w, pre.scale);
                    let z = sat8(
                        i64::from(pre.zero_point) + rq(acc, m, t, coverage),
                        coverage,
                    );
                    if z < pre.zero_point {
                        coverage.negative_table_inputs += 1;
                    }
                    pre_values.push(z);
                    lut.as_ref().unwrap()[(i64::from(z) + 128) as usize]
                }
            }
        })
        .collect();
    LayerOut {
        pre: lut.map(|_| pre_values),
        output,
    }
}

/// The whole network on one raw row: the input and every layer's results.
fn kernel(mlp: &QdqMlp, raw: &[i32], coverage: &mut Coverage) -> (Vec<i8>, Vec<LayerOut>) {
    let input_q = kernel_input(mlp, raw, coverage);
    let mut params = mlp.input;
    let mut q = input_q.clone();
    let mut layers = Vec::new();
    for layer in &mlp.layers {
        let out = kernel_layer(layer, params, &q, coverage);
        q = out.output.clone();
        params = layer.output;
        layers.push(out);
    }
    (input_q, layers)
}

// ---------------------------------------------------------------------------
// Networks, inputs and graph runs.
// ---------------------------------------------------------------------------

/// A fixed-seed generator so every run sees the same data.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }

    fn unit(&mut self) -> f32 {
        (self.next() % 1_000_000) as f32 / 1_000_000.0
    }
}

fn options() -> MlpExportOptions {
    MlpExportOptions {
        opset: 13,
        with_probabilities: false,
        producer: Producer {
            name: "kiln".to_owned(),
            version: "test".to_owned(),
        },
        doc_string: "kiln-onnx QDQ test model".to_owned(),
        metadata: Vec::new(),
    }
}

fn params(scale: f32, zero_point: i8) -> QuantParams {
    QuantParams { scale, zero_point }
}

fn pow2(exponent: i32) -> f32 {
    2f32.powi(exponent)
}

/// A layer with random symmetric weights (each row reaches +-127 somewhere,
/// as the quantizer's max-abs scaling does) and random biases.
fn random_layer(
    rng: &mut Lcg,
    n_inputs: usize,
    n_outputs: usize,
    weight_scales: Vec<f32>,
    bias_range: i64,
    activation: QdqActivation,
    output: QuantParams,
) -> QdqLayer {
    let mut weights: Vec<i8> = (0..n_inputs * n_outputs)
        .map(|_| rng.int(-127, 127) as i8)
        .collect();
    for o in 0..n_outputs {
        let k = rng.int(0, n_inputs as i64 - 1) as usize;
        weights[o * n_inputs + k] = if rng.int(0, 1) == 0 { 127 } else { -127 };
    }
    QdqLayer {
        n_inputs,
        n_outputs,
        weights,
        weight_scales,
        bias: (0..n_outputs)
            .map(|_| rng.int(-bias_range, bias_range) as i32)
            .collect(),
        activation,
        output,
    }
}

/// Every scale a power of two, the mean a multiple of 1/256: float and
/// integer must agree exactly. 6 -> 8 (Relu) -> 7 (LeakyRelu table) -> 7
/// (Relu) -> 5 (Identity).
fn pow2_mlp() -> QdqMlp {
    let mut rng = Lcg(0x5EED_0001);
    let scales = |n: usize, rng: &mut Lcg| -> Vec<f32> {
        (0..n).map(|_| pow2(-(rng.int(5, 8) as i32))).collect()
    };
    let layers = vec![
        {
            let s = scales(8, &mut rng);
            random_layer(
                &mut rng,
                6,
                8,
                s,
                3000,
                QdqActivation::Relu,
                params(pow2(-2), -40),
            )
        },
        {
            let s = scales(7, &mut rng);
            random_layer(
                &mut rng,
                8,
                7,
                s,
                3000,
                QdqActivation::Table {
                    function: Activation::LeakyRelu { alpha: 0.25 },
                    pre: params(pow2(-1), 10),
                },
                params(pow2(-2), -20),
            )
        },
        {
            let s = scales(7, &mut rng);
            random_layer(
                &mut rng,
                7,
                7,
                s,
                3000,
                QdqActivation::Relu,
                params(pow2(-1), -100),
            )
        },
        {
            let s = scales(5, &mut rng);
            random_layer(
                &mut rng,
                7,
                5,
                s,
                3000,
                QdqActivation::Identity,
                params(pow2(0), 3),
            )
        },
    ];
    QdqMlp {
        int16: false,
        input_frac_bits: 0,
        normalization: InputNormalization::Standardize {
            mean: vec![0.5, -1.25, 2.0, 0.0, 3.75, -0.125],
            inv_std: vec![0.5, 0.25, 1.0, 0.125, 0.5, 2.0],
        },
        input: params(pow2(-2), -3),
        layers,
    }
}

/// Arbitrary scales, every table function, pixel-like inputs:
/// 12 -> 10 (Relu) -> 9 (Tanh) -> 8 (Sigmoid) -> 8 (LeakyRelu 0.1) -> 4.
fn general_mlp() -> QdqMlp {
    let mut rng = Lcg(0x5EED_0002);
    let scales = |n: usize, base: f32, rng: &mut Lcg| -> Vec<f32> {
        (0..n).map(|_| base * (0.5 + rng.unit())).collect()
    };
    let n_features = 12;
    let mean: Vec<f32> = (0..n_features).map(|_| 40.0 + 120.0 * rng.unit()).collect();
    let inv_std: Vec<f32> = (0..n_features)
        .map(|_| 1.0 / (30.0 + 50.0 * rng.unit()))
        .collect();
    let layers = vec![
        {
            let s = scales(10, 0.004, &mut rng);
            random_layer(
                &mut rng,
                12,
                10,
                s,
                4000,
                QdqActivation::Relu,
                params(0.0371, -101),
            )
        },
        {
            let s = scales(9, 0.003, &mut rng);
            random_layer(
                &mut rng,
                10,
                9,
                s,
                3000,
                QdqActivation::Table {
                    function: Activation::Tanh,
                    pre: params(0.0213, 7),
                },
                params(1.0 / 127.5, 0),
            )
        },
        {
            let s = scales(8, 0.01, &mut rng);
            random_layer(
                &mut rng,
                9,
                8,
                s,
                3000,
                QdqActivation::Table {
                    function: Activation::Sigmoid,
                    pre: params(0.0437, -12),
                },
                params(1.0 / 255.0, -128),
            )
        },
        {
            let s = scales(8, 0.02, &mut rng);
            random_layer(
                &mut rng,
                8,
                8,
                s,
                20000,
                QdqActivation::Table {
                    function: Activation::LeakyRelu { alpha: 0.1 },
                    pre: params(0.0523, 30),
                },
                params(0.0311, -60),
            )
        },
        {
            let s = scales(4, 0.01, &mut rng);
            random_layer(
                &mut rng,
                8,
                4,
                s,
                5000,
                QdqActivation::Identity,
                params(0.0917, 4),
            )
        },
    ];
    QdqMlp {
        int16: false,
        input_frac_bits: 0,
        normalization: InputNormalization::Standardize { mean, inv_std },
        input: params(0.0279, -9),
        layers,
    }
}

fn raw_rows(seed: u64, n_rows: usize, n_features: usize, lo: i64, hi: i64) -> Vec<Vec<i32>> {
    let mut rng = Lcg(seed);
    (0..n_rows)
        .map(|_| (0..n_features).map(|_| rng.int(lo, hi) as i32).collect())
        .collect()
}

/// Runs the model (after a trip through the wire format) on raw integer
/// rows, fed as FLOAT like any raw feature.
fn run(model: &ModelProto, rows: &[Vec<i32>]) -> HashMap<String, Tensor> {
    let model = decode_model(&encode_model(model)).unwrap();
    let n_features = rows[0].len();
    let input = Tensor::f32(
        vec![rows.len(), n_features],
        rows.iter().flatten().map(|&v| v as f32).collect(),
    );
    evaluate(&model, &input)
}

fn row<'a>(env: &'a HashMap<String, Tensor>, name: &str, r: usize) -> &'a [i8] {
    let t = env
        .get(name)
        .unwrap_or_else(|| panic!("the graph has no tensor {name}"));
    let width = t.shape[1];
    &t.int8s()[r * width..(r + 1) * width]
}

/// The int8 tensor that layer `i` writes.
fn output_name(mlp: &QdqMlp, i: usize) -> String {
    if i + 1 == mlp.layers.len() {
        "logits_q".to_owned()
    } else {
        format!("layer{i}.output_q")
    }
}

/// Number of elements where the graph's int8 tensors differ from the integer
/// computation, end to end (every stage compared).
fn mismatches(model: &ModelProto, mlp: &QdqMlp, rows: &[Vec<i32>]) -> usize {
    let env = run(model, rows);
    let mut coverage = Coverage::default();
    let mut count = 0;
    let mut compare = |got: &[i8], want: &[i8]| {
        assert_eq!(got.len(), want.len());
        count += got.iter().zip(want).filter(|(g, w)| g != w).count();
    };
    for (r, raw) in rows.iter().enumerate() {
        let (input_q, layers) = kernel(mlp, raw, &mut coverage);
        compare(row(&env, "input_q", r), &input_q);
        for (i, out) in layers.iter().enumerate() {
            if let Some(pre) = &out.pre {
                compare(row(&env, &format!("layer{i}.pre_activation_q"), r), pre);
            }
            compare(row(&env, &output_name(mlp, i), r), &out.output);
        }
    }
    count
}

// ---------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------

#[test]
fn power_of_two_scales_agree_bit_for_bit() {
    let mlp = pow2_mlp();
    let model = qdq_mlp_to_model(&mlp, &options()).unwrap();
    let rows = raw_rows(7, 96, 6, -24, 24);
    let env = run(&model, &rows);
    let last = mlp.layers.last().unwrap();
    let n_out = last.n_outputs;
    assert_eq!(env["logits_q"].shape, [rows.len(), n_out]);
    assert_eq!(env["logits"].shape, [rows.len(), n_out]);

    let mut coverage = Coverage::default();
    for (r, raw) in rows.iter().enumerate() {
        let (input_q, layers) = kernel(&mlp, raw, &mut coverage);
        assert_eq!(row(&env, "input_q", r), input_q, "row {r} input_q");
        for (i, out) in layers.iter().enumerate() {
            if let Some(pre) = &out.pre {
                let name = format!("layer{i}.pre_activation_q");
                assert_eq!(row(&env, &name, r), *pre, "row {r} {name}");
            }
            let name = output_name(&mlp, i);
            assert_eq!(row(&env, &name, r), out.output, "row {r} {name}");
        }
        // `logits` is exactly s_out * (logits_q - zp_out).
        let logits = &env["logits"].floats()[r * n_out..(r + 1) * n_out];
        let want: Vec<f32> = layers
            .last()
            .unwrap()
            .output
            .iter()
            .map(|&q| (i32::from(q) - i32::from(last.output.zero_point)) as f32 * last.output.scale)
            .collect();
        assert_eq!(logits, want, "row {r} logits");
    }
    // The data must exercise what could go wrong: ties (round half to even
    // against any other rounding), saturation, the ReLU clamp and both
    // branches of the leaky ReLU table.
    eprintln!("{coverage:?}");
    assert!(coverage.ties >= 10, "{coverage:?}");
    assert!(coverage.saturated >= 10, "{coverage:?}");
    assert!(coverage.relu_clamped >= 10, "{coverage:?}");
    assert!(coverage.negative_table_inputs >= 10, "{coverage:?}");
    // The logits are not all saturated or constant.
    let distinct: std::collections::HashSet<i8> = env["logits_q"].int8s().iter().copied().collect();
    assert!(distinct.len() > 20, "{distinct:?}");
}

#[test]
fn power_of_two_agreement_holds_for_every_opset_and_normalization() {
    let base = pow2_mlp();
    let rows = raw_rows(11, 24, 6, -24, 24);
    for normalization in [
        InputNormalization::None,
        InputNormalization::Scale { scale: 0.25 },
        base.normalization.clone(),
    ] {
        let mlp = QdqMlp {
            int16: false,
            input_frac_bits: 0,
            normalization: normalization.clone(),
            ..base.clone()
        };
        for opset in [13, 17, 21] {
            let model = qdq_mlp_to_model(&mlp, &MlpExportOptions { opset, ..options() }).unwrap();
            assert_eq!(
                mismatches(&model, &mlp, &rows),
                0,
                "opset {opset}, {normalization:?}"
            );
        }
    }
}

#[test]
fn general_scales_agree_within_one_step_at_every_stage() {
    let mlp = general_mlp();
    let model = qdq_mlp_to_model(&mlp, &options()).unwrap();
    let rows = raw_rows(13, 128, 12, 0, 255);
    let env = run(&model, &rows);

    let (mut compared, mut exact, mut worst) = (0usize, 0usize, 0i32);
    let mut check = |got: &[i8], want: &[i8], what: &str| {
        for (g, w) in got.iter().zip(want) {
            let d = (i32::from(*g) - i32::from(*w)).abs();
            assert!(d <= 1, "{what}: graph {g}, integer {w}");
            compared += 1;
            exact += usize::from(d == 0);
            worst = worst.max(d);
        }
    };
    let mut coverage = Coverage::default();
    for (r, raw) in rows.iter().enumerate() {
        check(
            row(&env, "input_q", r),
            &kernel_input(&mlp, raw, &mut coverage),
            &format!("row {r} input_q"),
        );
        // Each layer from the graph's own int8 input, so a one-step
        // difference upstream is not amplified downstream.
        let mut input_name = "input_q".to_owned();
        let mut input_params = mlp.input;
        for (i, layer) in mlp.layers.iter().enumerate() {
            let q_in = row(&env, &input_name, r);
            let out = kernel_layer(layer, input_params, q_in, &mut coverage);
            let name = output_name(&mlp, i);
            match (&layer.activation, &out.pre) {
                (QdqActivation::Table { function, pre }, Some(want_pre)) => {
                    let pre_name = format!("layer{i}.pre_activation_q");
                    let got_pre = row(&env, &pre_name, r);
                    check(got_pre, want_pre, &format!("row {r} {pre_name}"));
                    // The table applied to the graph's own index.
                    let lut = table(*function, *pre, layer.output);
                    let want: Vec<i8> = got_pre
                        .iter()
                        .map(|&z| lut[(i32::from(z) + 128) as usize])
                        .collect();
                    check(row(&env, &name, r), &want, &format!("row {r} {name}"));
                }
                _ => check(row(&env, &name, r), &out.output, &format!("row {r} {name}")),
            }
            input_name = name;
            input_params = layer.output;
        }
    }
    eprintln!("{compared} values, {exact} exact, worst {worst}, {coverage:?}");
    // Off-by-one happens only where a value sits on a rounding boundary;
    // a systematic error (a wrong scale, another rounding) would be common.
    assert!(
        exact * 1000 >= compared * 995,
        "{exact} of {compared} exact"
    );
    assert!(
        coverage.saturated > 0 && coverage.relu_clamped > 0,
        "{coverage:?}"
    );
}

/// The comparison can fail: graphs that differ from the integer model in
/// layout, axis or bias are caught.
#[test]
fn a_wrong_graph_is_detected() {
    let mlp = pow2_mlp();
    let rows = raw_rows(17, 48, 6, -24, 24);
    let good = qdq_mlp_to_model(&mlp, &options()).unwrap();
    assert_eq!(mismatches(&good, &mlp, &rows), 0);

    // Transposed weights in the square layer 2 keep every shape valid.
    let mut transposed = mlp.clone();
    let w = &mlp.layers[2].weights;
    transposed.layers[2].weights = (0..49).map(|k| w[(k % 7) * 7 + k / 7]).collect();
    let model = qdq_mlp_to_model(&transposed, &options()).unwrap();
    assert!(mismatches(&model, &mlp, &rows) > 20);

    // Per-channel scales along the wrong axis (valid: the layer is square).
    let mut model = good.clone();
    let node = model
        .graph
        .as_mut()
        .unwrap()
        .node
        .iter_mut()
        .find(|n| n.name() == "layer2_dequantize_weight")
        .unwrap();
    node.attribute = vec![attr_int("axis", 1)];
    assert!(mismatches(&model, &mlp, &rows) > 20);

    // A bias already folded with the input zero point, as the runtime stores
    // it, counts the zero point twice.
    let mut folded = mlp.clone();
    let zp_in = i32::from(mlp.layers[0].output.zero_point);
    let layer = &mut folded.layers[1];
    for o in 0..layer.n_outputs {
        let row_sum: i32 = layer.weights[o * 8..(o + 1) * 8]
            .iter()
            .map(|&w| i32::from(w))
            .sum();
        layer.bias[o] -= zp_in * row_sum;
    }
    let model = qdq_mlp_to_model(&folded, &options()).unwrap();
    assert!(mismatches(&model, &mlp, &rows) > 20);

    // A different activation.
    let mut tanh = mlp.clone();
    tanh.layers[1].activation = QdqActivation::Table {
        function: Activation::Tanh,
        pre: params(pow2(-1), 10),
    };
    let model = qdq_mlp_to_model(&tanh, &options()).unwrap();
    assert!(mismatches(&model, &mlp, &rows) > 20);
}

/// x -> QuantizeLinear(scale, zero point) -> y, per tensor.
fn quantize_graph(scale: f32, zero_point: i8, width: usize) -> ModelProto {
    let mut g = GraphBuilder::new("q");
    g.input_f32("x", &[Dim::Fixed(1), Dim::Fixed(width as i64)]);
    g.initializer_f32("s", &[], &[scale]).unwrap();
    g.initializer_i8("z", &[], &[zero_point]).unwrap();
    g.node("QuantizeLinear", "q", &["x", "s", "z"], &["y"], Vec::new())
        .output(
            "y",
            DataType::Int8,
            &[Dim::Fixed(1), Dim::Fixed(width as i64)],
        );
    g.build(13, &options().producer, "").unwrap()
}

#[test]
fn interpreter_quantize_linear_rounds_half_to_even_and_saturates() {
    let x = vec![0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49, 300.0, -300.0];
    let input = Tensor::f32(vec![1, x.len()], x.clone());
    let env = evaluate(&quantize_graph(1.0, 0, x.len()), &input);
    assert_eq!(env["y"].int8s(), [0, 2, 2, 0, -2, -2, 0, 127, -128]);
    // The zero point is added after rounding, then the sum saturates.
    let env = evaluate(&quantize_graph(1.0, -3, x.len()), &input);
    assert_eq!(env["y"].int8s(), [-3, -1, -1, -3, -5, -5, -3, 127, -128]);
    let env = evaluate(&quantize_graph(0.5, 120, x.len()), &input);
    assert_eq!(
        env["y"].int8s(),
        [121, 123, 125, 119, 117, 115, 121, 127, -128]
    );
}

#[test]
fn interpreter_quantize_linear_divides_in_f32() {
    // Two f32 inputs where x / 0.1 and x * (1 / 0.1) round to different
    // integers: 15.499999 against 15.5, and the exact tie 32.5 against
    // 32.500004.
    let scale = 0.1f32;
    let x = [f32::from_bits(0x3FC6_6666), f32::from_bits(0x4050_0001)];
    let by_reciprocal: Vec<i8> = x
        .iter()
        .map(|v| (v * (1.0 / scale)).round_ties_even() as i8)
        .collect();
    assert_eq!(by_reciprocal, [16, 33]);
    let env = evaluate(
        &quantize_graph(scale, 0, 2),
        &Tensor::f32(vec![1, 2], x.to_vec()),
    );
    assert_eq!(env["y"].int8s(), [15, 32]);
}

#[test]
fn interpreter_dequantize_linear_per_tensor_and_per_axis() {
    let build =
        |x_type: DataType, scale_dims: &[i64], scales: &[f32], zps: &[i32], axis: Option<i64>| {
            let mut g = GraphBuilder::new("dq");
            g.input("x", x_type, &[Dim::Fixed(2), Dim::Fixed(3)]);
            g.initializer_f32("s", scale_dims, scales).unwrap();
            if x_type == DataType::Int8 {
                let zps: Vec<i8> = zps.iter().map(|&z| z as i8).collect();
                g.initializer_i8("z", scale_dims, &zps).unwrap();
            } else {
                g.initializer_i32("z", scale_dims, zps).unwrap();
            }
            g.node(
                "DequantizeLinear",
                "dq",
                &["x", "s", "z"],
                &["y"],
                axis.map(|a| vec![attr_int("axis", a)]).unwrap_or_default(),
            )
            .output_f32("y", &[Dim::Fixed(2), Dim::Fixed(3)]);
            g.build(13, &options().producer, "").unwrap()
        };
    let x8 = Tensor::i8(vec![2, 3], vec![-128, 0, 127, 5, -5, 1]);
    let y = |model: &ModelProto, x: &Tensor| evaluate(model, x)["y"].floats().to_vec();

    let per_tensor = build(DataType::Int8, &[], &[0.5], &[-3], None);
    assert_eq!(y(&per_tensor, &x8), [-62.5, 1.5, 65.0, 4.0, -1.0, 2.0]);
    let rows = build(DataType::Int8, &[2], &[0.5, 2.0], &[1, -1], Some(0));
    assert_eq!(y(&rows, &x8), [-64.5, -0.5, 63.0, 12.0, -8.0, 4.0]);
    // The default axis is 1.
    let columns = build(DataType::Int8, &[3], &[1.0, 0.25, 4.0], &[0, 4, -1], None);
    assert_eq!(y(&columns, &x8), [-128.0, -1.0, 512.0, 5.0, -2.25, 8.0]);

    let x32 = Tensor::i32(vec![2, 3], vec![1 << 20, -3, 0, 7, i32::MIN, 100]);
    let int32_rows = build(DataType::Int32, &[2], &[0.25, 0.5], &[0, 0], Some(0));
    assert_eq!(
        y(&int32_rows, &x32),
        [262_144.0, -0.75, 0.0, 3.5, -1_073_741_824.0, 50.0]
    );
}

/// Writes sample models and the interpreter's results for the external
/// check with onnx and onnxruntime (see the report of the int8 QDQ work):
/// `<temp>/kiln-onnx-qdq-samples/{pow2,general}.onnx` and `.expected.txt`.
#[test]
fn writes_sample_models_for_external_runtimes() {
    let dir = std::env::temp_dir().join("kiln-onnx-qdq-samples");
    std::fs::create_dir_all(&dir).unwrap();
    let samples = [
        ("pow2", pow2_mlp(), raw_rows(23, 16, 6, -24, 24)),
        ("general", general_mlp(), raw_rows(29, 16, 12, 0, 255)),
    ];
    for (name, mlp, rows) in samples {
        let model = qdq_mlp_to_model(&mlp, &options()).unwrap();
        write_model_atomic(&dir.join(format!("{name}.onnx")), &model).unwrap();
        let env = run(&model, &rows);
        let n_out = mlp.layers.last().unwrap().n_outputs;
        let mut text = String::from(
            "# rows: input (raw f32), logits_q (Rust interpreter), kernel_q (integer model), logits (interpreter)\n",
        );
        let join = |values: Vec<String>| values.join(" ");
        let mut coverage = Coverage::default();
        for (r, raw) in rows.iter().enumerate() {
            let (_, layers) = kernel(&mlp, raw, &mut coverage);
            let logits = &env["logits"].floats()[r * n_out..(r + 1) * n_out];
            writeln!(
                text,
                "input {}",
                join(raw.iter().map(|v| format!("{v}.0")).collect())
            )
            .unwrap();
            writeln!(
                text,
                "logits_q {}",
                join(row(&env, "logits_q", r).iter().map(i8::to_string).collect())
            )
            .unwrap();
            writeln!(
                text,
                "kernel_q {}",
                join(
                    layers
                        .last()
                        .unwrap()
                        .output
                        .iter()
                        .map(i8::to_string)
                        .collect()
                )
            )
            .unwrap();
            writeln!(
                text,
                "logits {}",
                join(logits.iter().map(|v| format!("{v:?}")).collect())
            )
            .unwrap();
        }
        std::fs::write(dir.join(format!("{name}.expected.txt")), text).unwrap();
    }
}
