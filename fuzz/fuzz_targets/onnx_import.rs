//! Any bytes as an ONNX file through the importer: the reader (protobuf,
//! opsets, initializers; external data is refused without a folder), the
//! folding into dense layers or a layer graph (which kiln's exporter must accept), and,
//! for a model that folds, the float evaluator
//! on the engine graph with a zero input. Errors are fine; panics, aborts and
//! huge allocations are not, and a folded MLP must be consistent.
#![no_main]

use std::collections::HashMap;

use kiln_onnx::eval::{self, Tensor};
use kiln_onnx::import::{self, fold, reader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(loaded) =
        reader::read_model_bytes(data, None, reader::MIN_IMPORT_OPSET, reader::MAX_IMPORT_OPSET)
    else {
        return;
    };
    let Ok(mlp) = fold::fold(&loaded) else {
        return;
    };
    // The folded layers chain, and every array has the size its shape says.
    let mut width = mlp.n_inputs;
    assert_eq!(width, mlp.input.dims.iter().product::<usize>());
    for layer in &mlp.layers {
        assert_eq!(layer.n_inputs, width);
        assert_eq!(layer.weights.len(), layer.n_inputs * layer.n_outputs);
        assert_eq!(layer.bias.len(), layer.n_outputs);
        width = layer.n_outputs;
    }
    // A folded layer graph is one kiln's own exporter accepts: its shapes chain and every
    // weight and bias array has the size its layer says.
    if let Some(cnn) = &mlp.cnn {
        assert!(mlp.layers.is_empty());
        let options = kiln_onnx::mlp::MlpExportOptions {
            opset: 13,
            with_probabilities: false,
            producer: kiln_onnx::builder::Producer {
                name: "fuzz".into(),
                version: "0".into(),
            },
            doc_string: String::new(),
            metadata: Vec::new(),
        };
        if let Err(e) = kiln_onnx::cnn::cnn_to_model(cnn, &mlp.normalization, &options) {
            // Non-finite weights come from the file itself; anything else is a folding bug.
            assert!(
                matches!(e, kiln_onnx::OnnxError::NonFinite { .. }),
                "a folded CNN the exporter refuses: {e}"
            );
        }
    }
    // The engine graph runs (or refuses) on a small zero batch.
    if mlp.n_inputs <= 4096 {
        let engine = import::engine_model(&loaded, &mlp);
        let mut dims = vec![mlp.input.fixed_batch.unwrap_or(2).min(4)];
        dims.extend_from_slice(&mlp.input.dims);
        let n: usize = dims.iter().product();
        let feeds = HashMap::from([(mlp.input.name.clone(), Tensor::f32(dims, vec![0.0; n]))]);
        if let Some(graph) = engine.graph.as_ref() {
            let _ = eval::run_graph(graph, loaded.opset, &loaded.initializers, &feeds);
        }
    }
});
