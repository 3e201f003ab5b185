//! tract against the runtime one layer at a time (`host::compare_layers_with_tract`): each
//! layer fed the runtime's own int8 input, so a rounding difference early in a deep network
//! does not count again in every later layer, and a wrong layer is pinpointed.

mod common;

use common::{kiln, s, stderr};
use kiln_runtime::encode::LayerSpec;
use kiln_trainer::data::{self, DataOptions, DataSpec};
use kiln_trainer::quant::{self, host, QuantOptions};

/// A three-layer digits MLP (64-16-12-10), quantized in process; the QDQ file is written next
/// to it. Returns the quantized model, the QDQ path and the test set's raw inputs.
fn quantized_digits(dir: &std::path::Path) -> (quant::Quantized, std::path::PathBuf, Vec<i32>) {
    let out = s(dir);
    let trained = kiln(&[
        "train", "--hidden", "16,12", "--epochs", "2", "--quiet", "-o", out,
    ]);
    assert!(trained.status.success(), "{}", stderr(&trained));
    let model = kiln_trainer::model::ModelFile::load(&dir.join("model.json")).unwrap();
    let split = data::load(&DataSpec::Digits, &DataOptions::default()).unwrap();
    let quantized = quant::quantize(&model, &split.train, QuantOptions::default()).unwrap();
    let proto = quant::qdq_onnx(&model, &quantized).unwrap();
    let qdq_path = dir.join("model.qdq.onnx");
    std::fs::write(&qdq_path, kiln_onnx::mlp::encode_model(&proto)).unwrap();
    let runtime = kiln_runtime::Model::from_bytes(&quantized.blob).unwrap();
    let raw = host::raw_inputs(&split.test, "digits", runtime.input_frac_bits()).unwrap();
    (quantized, qdq_path, raw)
}

#[test]
fn every_layer_alone_agrees_with_tract() {
    let dir = tempfile::tempdir().unwrap();
    let (quantized, qdq_path, raw) = quantized_digits(dir.path());
    let layers = host::compare_layers_with_tract(&quantized, &qdq_path, &raw)
        .unwrap()
        .expect("an MLP is compared layer by layer");
    assert_eq!(layers.len(), 3, "{layers:?}");
    assert!(
        layers.iter().all(|&d| d <= host::MAX_LSB_DIFF),
        "{layers:?}"
    );
}

#[test]
fn a_wrong_layer_is_pinpointed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut quantized, qdq_path, raw) = quantized_digits(dir.path());
    // The runtime's second layer gets a bias far off; the QDQ file keeps the right one. Every
    // layer alone reads the runtime's own input, so only the second one differs.
    let LayerSpec::Dense(dense) = &mut quantized.spec.nodes[1].layer else {
        panic!("a dense layer");
    };
    for bias in &mut dense.bias {
        *bias += 5000;
    }
    quantized.blob = kiln_runtime::encode::encode(&quantized.spec).unwrap();
    let layers = host::compare_layers_with_tract(&quantized, &qdq_path, &raw)
        .unwrap()
        .unwrap();
    assert!(layers[0] <= host::MAX_LSB_DIFF, "{layers:?}");
    assert!(layers[1] > 10, "{layers:?}");
    assert!(layers[2] <= host::MAX_LSB_DIFF, "{layers:?}");
}

#[test]
fn the_layers_decide_only_when_the_outputs_differ() {
    let mut comparison = host::TractComparison {
        qdq_path: "m.qdq.onnx".into(),
        n_samples: 10,
        identical: 8,
        max_lsb_diff: 2,
        argmax_agreement: 10,
        classifier: false,
        layer_max_lsb_diff: None,
    };
    assert!(
        !comparison.passed(),
        "2 LSB at the output and no layer comparison"
    );
    comparison.layer_max_lsb_diff = Some(vec![1, 0, 1]);
    assert!(comparison.passed(), "every layer alone within 1 LSB");
    assert_eq!(comparison.layer_max(), Some(1));
    comparison.layer_max_lsb_diff = Some(vec![1, 2, 0]);
    assert!(!comparison.passed(), "a layer alone 2 LSB off");
    comparison.layer_max_lsb_diff = Some(vec![0, 1]);
    comparison.classifier = true;
    comparison.argmax_agreement = 9;
    assert!(
        !comparison.passed(),
        "a classifier's argmax must agree on every sample"
    );
}
