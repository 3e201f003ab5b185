#!/usr/bin/env python3
"""The independent ONNX oracle that CI runs over every file the checks produce.

For each float ONNX file under the given folders it:
  1. runs onnx.checker.check_model(full_check=True);
  2. runs the file with onnxruntime on the inputs the trainer saved beside it
     (<stem>.input.npy) and compares the `logits` output with the trainer's own
     outputs (<stem>.logits.npy), which must agree within --tolerance (max abs);
  3. if the file has a `probabilities` output, checks it is the softmax of the
     logits within the same tolerance.
For each int8 QDQ file (one with a `logits_q` output) it runs the checker, then
compares `logits_q` with kiln-runtime's int8 logits (<stem>.logits_q.npy) under
two engines: onnxruntime with graph optimizations off (its optimized int8
kernels saturate intermediate sums, so they are no exact oracle) and the onnx
package's ReferenceEvaluator. Every value must be within 1 LSB and every argmax
must agree; in a folder whose name ends in `pow2` (quantized with power-of-two
scales, where a float engine's arithmetic is exact) every value must be equal.
It prints one line per file and exits non-zero if any file fails.
"""
import argparse
import pathlib
import sys

import numpy as np
import onnx
import onnxruntime as ort


def compare_int8(name: str, actual: np.ndarray, expected: np.ndarray, exact: bool) -> tuple[bool, str]:
    if actual.shape != expected.shape:
        return False, f"{name}: logits_q shape {actual.shape}, expected {expected.shape}"
    diff = np.abs(actual.astype(np.int32) - expected.astype(np.int32))
    identical = int(np.sum(np.all(diff == 0, axis=1)))
    agree = int(np.sum(np.argmax(actual, axis=1) == np.argmax(expected, axis=1)))
    n = expected.shape[0]
    detail = f"{name}: {identical}/{n} rows identical, max {int(diff.max())} LSB, argmax agrees {agree}/{n}"
    limit = 0 if exact else 1
    return bool(diff.max() <= limit and agree == n), detail


def sample_shaped(session: ort.InferenceSession, inputs: np.ndarray) -> np.ndarray:
    """The saved inputs are one flat row per sample; a convolutional graph takes them as
    [N, C, H, W] (or [N, C, L]), the same values in the same (CHW) order."""
    sample_dims = session.get_inputs()[0].shape[1:]
    if len(sample_dims) > 1:
        return inputs.reshape([inputs.shape[0]] + [int(d) for d in sample_dims])
    return inputs


def check_qdq(path: pathlib.Path, inputs: np.ndarray, expected: np.ndarray) -> tuple[bool, str]:
    from onnx.reference import ReferenceEvaluator

    exact = path.parent.name.endswith("pow2")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs = sample_shaped(session, inputs)
    (ort_q,) = session.run(["logits_q"], {"input": inputs})
    ok_ort, detail_ort = compare_int8("onnxruntime (no graph optimizations)", ort_q, expected, exact)
    # The reference evaluator implements DequantizeLinear from opset 19 on; the
    # int8 arithmetic of QuantizeLinear/DequantizeLinear is the same in 13 and 21.
    model = onnx.load(str(path))
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, 21)
    model.ir_version = max(model.ir_version, 10)
    (ref_q,) = ReferenceEvaluator(model).run(["logits_q"], {"input": inputs})
    ok_ref, detail_ref = compare_int8("onnx.reference", ref_q, expected, exact)
    bound = "exact (power-of-two scales)" if exact else "within 1 LSB"
    return ok_ort and ok_ref, f"{inputs.shape[0]} samples, {bound}; {detail_ort}; {detail_ref}"


def check_file(path: pathlib.Path, tolerance: float) -> tuple[bool, str]:
    stem = path.with_suffix("")
    input_path = stem.parent / (stem.name + ".input.npy")
    logits_path = stem.parent / (stem.name + ".logits.npy")
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as error:  # the checker raises several exception types
        return False, f"onnx.checker full check failed: {error}"
    if any(o.name == "logits_q" for o in onnx.load(str(path), load_external_data=False).graph.output):
        logits_q_path = stem.parent / (stem.name + ".logits_q.npy")
        if not input_path.exists() or not logits_q_path.exists():
            return False, f"no reference outputs beside it (expected {input_path.name} and {logits_q_path.name})"
        return check_qdq(path, np.load(input_path), np.load(logits_q_path))
    if not input_path.exists() or not logits_path.exists():
        return False, f"no reference outputs beside it (expected {input_path.name} and {logits_path.name})"
    inputs = np.load(input_path)
    expected = np.load(logits_path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    inputs = sample_shaped(session, inputs)
    output_names = [o.name for o in session.get_outputs()]
    if "logits" not in output_names:
        return False, f"no `logits` output (outputs: {output_names})"
    results = dict(zip(output_names, session.run(output_names, {input_name: inputs})))
    logits = results["logits"]
    if logits.shape != expected.shape:
        return False, f"logits shape {logits.shape}, expected {expected.shape}"
    max_abs = float(np.max(np.abs(logits.astype(np.float64) - expected.astype(np.float64))))
    detail = f"{inputs.shape[0]} samples, max |diff| {max_abs:.2e}"
    if not max_abs <= tolerance:
        return False, detail + f" exceeds {tolerance:g}"
    if expected.shape[1] > 1:
        agree = int(np.sum(np.argmax(logits, axis=1) == np.argmax(expected, axis=1)))
        detail += f", argmax agrees {agree}/{inputs.shape[0]}"
    if "probabilities" in results:
        shifted = expected.astype(np.float64) - expected.max(axis=1, keepdims=True)
        softmax = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        prob_diff = float(np.max(np.abs(results["probabilities"] - softmax)))
        detail += f", probabilities max |diff| {prob_diff:.2e}"
        if not prob_diff <= tolerance:
            return False, detail + f" exceeds {tolerance:g}"
    return True, detail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=pathlib.Path)
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args()
    files = sorted(p for folder in args.folders for p in folder.rglob("*.onnx"))
    if not files:
        print(f"onnx oracle: no .onnx files under {', '.join(map(str, args.folders))}", file=sys.stderr)
        return 1
    failed = 0
    print(f"onnx oracle: onnx {onnx.__version__}, onnxruntime {ort.__version__}")
    for path in files:
        ok, detail = check_file(path, args.tolerance)
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'} {path}: {detail}")
    print(f"oracle: {len(files) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
