#!/usr/bin/env python3
"""How far a float engine's rounding puts it from the device, for one `kiln quantize` folder.

A QDQ file's float engines dequantize, compute in float32 and quantize again at every layer;
near a half step their float32 sums round one way where the device's exact integer arithmetic
rounds the other, and over a deep network the differences add up. This script runs the folder's
`model.qdq.onnx` on its saved inputs (`model.qdq.input.npy`) three ways and compares
`logits_q` with kiln-runtime's (`model.qdq.logits_q.npy`):
  1. onnxruntime, graph optimizations off (float32; what CI's oracle runs);
  2. the onnx package's ReferenceEvaluator in float32;
  3. the same evaluator with every float initializer in float64 (numpy then computes each
     layer in double precision: close to the exact arithmetic the device performs).
It prints one line per engine: rows identical, the largest difference in LSB, argmax agreement.
It is a diagnostic, not a check: it exits 0 whatever it finds.

Usage: python xtask/scripts/qdq_float64.py DIR [N]   (the first N rows; all by default)
Needs numpy, onnx and onnxruntime (`.ci/run`'s venv has them).
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator


def in_float64(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose float initializers and constants are float64."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for init in copy.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float64), init.name))
    for node in copy.graph.node:
        for attr in node.attribute:
            if node.op_type == "Constant" and attr.t.data_type == onnx.TensorProto.FLOAT:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float64)))
    return copy


def summary(name: str, got: np.ndarray, device: np.ndarray) -> str:
    diff = np.abs(got.astype(np.int32) - device.astype(np.int32))
    n = device.shape[0]
    identical = int(np.sum(np.all(diff == 0, axis=1)))
    agree = int(np.sum(np.argmax(got, axis=1) == np.argmax(device, axis=1)))
    return f"{name}: {identical}/{n} rows identical, max {int(diff.max())} LSB, argmax agrees {agree}/{n}"


def main() -> int:
    folder = sys.argv[1]
    model = onnx.load(f"{folder}/model.qdq.onnx")
    inputs = np.load(f"{folder}/model.qdq.input.npy")
    device = np.load(f"{folder}/model.qdq.logits_q.npy")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else inputs.shape[0]
    inputs, device = inputs[:n], device[:n]
    name = model.graph.input[0].name
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:]

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(f"{folder}/model.qdq.onnx", options, providers=["CPUExecutionProvider"])
    rows = inputs.reshape([n] + dims).astype(np.float32)
    (ort_q,) = session.run(["logits_q"], {name: rows})
    print(summary("onnxruntime, float32", ort_q, device))

    # The reference evaluator implements DequantizeLinear from opset 19 on.
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, 21)
    for label, graph, dtype in (("reference, float32", model, np.float32), ("reference, float64", in_float64(model), np.float64)):
        evaluator = ReferenceEvaluator(graph)
        got = np.concatenate([evaluator.run(["logits_q"], {name: rows[i : i + 1].astype(dtype)})[0] for i in range(n)])
        print(summary(label, got, device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
