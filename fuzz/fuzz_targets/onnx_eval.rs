//! Any bytes as an ONNX model run by the float evaluator on zero inputs of the
//! declared shapes (opsets 7 to 25): every operator's attribute and shape
//! handling. Errors are fine; panics, aborts and huge allocations are not.
#![no_main]

use std::collections::HashMap;

use kiln_onnx::eval::{self, Tensor};
use kiln_onnx::import::reader;
use kiln_onnx::proto::{tensor_shape_proto::dimension, type_proto};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(loaded) =
        reader::read_model_bytes(data, None, reader::MIN_IMPORT_OPSET, reader::MAX_EVAL_OPSET)
    else {
        return;
    };
    let Some(graph) = loaded.proto.graph.as_ref() else {
        return;
    };
    let mut feeds = HashMap::new();
    for input in &graph.input {
        let name = input.name.clone().unwrap_or_default();
        if loaded.initializers.contains_key(&name) {
            continue;
        }
        let Some(type_proto::Value::TensorType(tensor)) =
            input.r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            return;
        };
        // Declared sizes up to 64; a symbolic or missing size is 1.
        let dims: Vec<usize> = tensor
            .shape
            .as_ref()
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| match d.value {
                        Some(dimension::Value::DimValue(v)) => v.clamp(0, 64) as usize,
                        _ => 1,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let n: usize = dims.iter().product();
        if n > 1 << 16 {
            return;
        }
        feeds.insert(name, Tensor::f32(dims, vec![0.0; n]));
    }
    let _ = eval::run_graph(graph, loaded.opset, &loaded.initializers, &feeds);
});
