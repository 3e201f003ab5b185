//! The ONNX backend node tests for the operators kiln imports (Gemm, MatMul,
//! Add, Relu, LeakyRelu, Sigmoid, Tanh, Softmax, LogSoftmax, Flatten),
//! regenerated with onnx 1.23.2 by `tests/data/node/regenerate.py`, run through
//! kiln's reader and float evaluator.
//!
//! Every test passes except those listed in [`OUT_OF_SCOPE`], each with its
//! reason; the test also proves each of those is refused by the evaluator
//! (never silently computed), so the list cannot hide a wrong answer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kiln_onnx::eval::{self, Tensor, TensorData};
use kiln_onnx::import::reader::{self, MAX_EVAL_OPSET, MIN_IMPORT_OPSET};

/// The ONNX backend tests' default tolerances.
const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-7;

/// Tests outside kiln's scope: (name prefix, reason).
const OUT_OF_SCOPE: &[(&str, &str)] = &[
    ("test_add_int8", "INT8 arithmetic; kiln's float evaluator computes in FLOAT"),
    ("test_add_int16", "INT16 elements; kiln's float evaluator computes in FLOAT"),
    ("test_add_uint8", "UINT8 arithmetic; kiln's float evaluator computes in FLOAT"),
    ("test_add_uint16", "UINT16 elements; kiln's float evaluator computes in FLOAT"),
    ("test_add_uint32", "UINT32 elements; kiln's float evaluator computes in FLOAT"),
    ("test_add_uint64", "UINT64 elements; kiln's float evaluator computes in FLOAT"),
    (
        "test_leakyrelu_default_expanded",
        "the function body of LeakyRelu (CastLike, Less, Where), not operators of an MLP",
    ),
    (
        "test_leakyrelu_example_expanded",
        "the function body of LeakyRelu (CastLike, Less, Where), not operators of an MLP",
    ),
    (
        "test_leakyrelu_expanded",
        "the function body of LeakyRelu (CastLike, Less, Where), not operators of an MLP",
    ),
    (
        "test_relu_expanded_ver18",
        "the function body of Relu (CastLike, Max), not operators of an MLP",
    ),
    (
        "test_logsoftmax_",
        "an `_expanded` test: the function body of LogSoftmax (ReduceMax, Exp, ReduceSum, Log), not operators of an MLP",
    ),
    (
        "test_softmax_",
        "an `_expanded` test: the function body of Softmax (ReduceMax, Exp, ReduceSum), not operators of an MLP",
    ),
];

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/node")
}

fn out_of_scope(name: &str) -> Option<&'static str> {
    OUT_OF_SCOPE.iter().find_map(|(prefix, reason)| {
        let expanded_only = prefix.ends_with('_');
        (name.starts_with(prefix) && (!expanded_only || name.contains("_expanded")))
            .then_some(*reason)
    })
}

fn as_f64(tensor: &Tensor) -> Vec<f64> {
    tensor
        .to_f64()
        .or_else(|| {
            tensor
                .to_i64()
                .map(|v| v.iter().map(|&x| x as f64).collect())
        })
        .unwrap_or_else(|| panic!("{} output", tensor.data.type_name()))
}

/// Runs one test folder; `Err` says why kiln cannot run it.
fn run_test(dir: &Path) -> Result<(), String> {
    let loaded =
        reader::read_model_with_opsets(&dir.join("model.onnx"), MIN_IMPORT_OPSET, MAX_EVAL_OPSET)
            .map_err(|e| e.to_string())?;
    let graph = loaded.proto.graph.as_ref().unwrap();
    let mut data_sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    data_sets.sort();
    assert!(!data_sets.is_empty(), "{}: no test_data_set", dir.display());
    for data_set in data_sets {
        let mut feeds = HashMap::new();
        for (index, input) in graph.input.iter().enumerate() {
            let (_, tensor) = reader::read_tensor_file(&data_set.join(format!("input_{index}.pb")))
                .map_err(|e| e.to_string())?;
            feeds.insert(input.name.clone().unwrap(), tensor);
        }
        let outputs = eval::run_graph(graph, loaded.opset, &loaded.initializers, &feeds)
            .map_err(|e| e.to_string())?;
        for (index, actual) in outputs.iter().enumerate() {
            let (_, expected) =
                reader::read_tensor_file(&data_set.join(format!("output_{index}.pb")))
                    .map_err(|e| e.to_string())?;
            assert_eq!(
                actual.dims,
                expected.dims,
                "{}: output {index} dims",
                data_set.display()
            );
            assert_eq!(
                std::mem::discriminant(&actual.data),
                std::mem::discriminant(&expected.data),
                "{}: output {index} type",
                data_set.display()
            );
            let (a, e) = (as_f64(actual), as_f64(&expected));
            for (i, (x, y)) in a.iter().zip(&e).enumerate() {
                assert!(
                    (x - y).abs() <= ATOL + RTOL * y.abs(),
                    "{}: output {index}[{i}] is {x}, expected {y}",
                    data_set.display()
                );
            }
        }
    }
    Ok(())
}

#[test]
fn onnx_node_tests_for_kilns_operators() {
    let listed = std::fs::read_to_string(data_dir().join("TESTS")).unwrap();
    let names: Vec<&str> = listed.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(names.len(), 89, "the regenerated set has 89 tests");
    let mut passed = Vec::new();
    let mut skipped = Vec::new();
    for name in &names {
        let result = run_test(&data_dir().join(name));
        match (out_of_scope(name), result) {
            (None, Ok(())) => passed.push(*name),
            (None, Err(why)) => panic!("{name} is in scope but fails: {why}"),
            (Some(reason), Err(why)) => skipped.push(format!("{name}: {reason} ({why})")),
            (Some(_), Ok(())) => {
                panic!("{name} is listed as out of scope but passes; remove it from the list")
            }
        }
    }
    println!("{} passed, {} out of scope:", passed.len(), skipped.len());
    for line in &skipped {
        println!("  {line}");
    }
    // Every op has passing tests.
    for op in [
        "gemm",
        "matmul",
        "add",
        "relu",
        "leakyrelu",
        "sigmoid",
        "tanh",
        "softmax",
        "logsoftmax",
        "flatten",
    ] {
        assert!(
            passed.iter().any(|n| n
                .strip_prefix("test_")
                .is_some_and(|rest| rest == op || rest.starts_with(&format!("{op}_")))),
            "no passing test for {op}"
        );
    }
    assert_eq!(passed.len() + skipped.len(), names.len());
    // The tally recorded in docs/import.md.
    assert_eq!((passed.len(), skipped.len()), (51, 38));
}

#[test]
fn tensor_files_decode_raw_and_typed_data() {
    let (name, tensor) =
        reader::read_tensor_file(&data_dir().join("test_gemm_alpha/test_data_set_0/input_0.pb"))
            .unwrap();
    assert_eq!(name, "a");
    assert_eq!(tensor.dims, [3, 5]);
    assert!(matches!(tensor.data, TensorData::F32(_)));
}
