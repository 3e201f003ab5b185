"""Regenerates the ONNX backend node tests for the operators kiln imports, with the onnx
package's own test-case definitions (each op at its newest opset), and copies them here.

onnx 1.23 no longer ships the generated data, so this runs its generator
(onnx.backend.test.cmd_tools.generate_data) over onnx.backend.test.case.node.collect_testcases
for each operator, then keeps every test whose name starts with `test_<op>` for the ops below
(by the op of the test's one node; the `_expanded` variants, whose graphs are the operator's
function body, are kept with the test they expand).

    python3.11 -m venv /tmp/venv-import
    /tmp/venv-import/bin/pip install onnx==1.23.2
    /tmp/venv-import/bin/python onnx/tests/data/node/regenerate.py

The data is the ONNX project's, under the Apache License 2.0 (LICENSE beside this file).
"""

import argparse
import pathlib
import shutil
import tempfile

import onnx
from onnx.backend.test.case import node
from onnx.backend.test.cmd_tools import generate_data, model_test

HERE = pathlib.Path(__file__).resolve().parent
# The op types whose tests are kept; generate_data names each test test_<snake case op>_...
OPS = ["Gemm", "MatMul", "Add", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Softmax", "LogSoftmax",
       "Flatten"]

with tempfile.TemporaryDirectory() as tmp:
    cases = node.collect_testcases(None)
    # A test is kept when its graph is one node of a kept op; an `_expanded` test (the op's
    # function body) is kept with the test it expands.
    base = {c.name for c in cases
            if c.model is not None and len(c.model.graph.node) == 1
            and c.model.graph.node[0].op_type in OPS and c.model.graph.node[0].domain in ("", "ai.onnx")}
    chosen = [c for c in cases if c.name in base or c.name.split("_expanded")[0] in base]
    model_test.collect_testcases = lambda: chosen
    generate_data(argparse.Namespace(output=tmp))
    generated = pathlib.Path(tmp) / "node"
    for old in HERE.glob("test_*"):
        shutil.rmtree(old)
    kept = []
    for case_dir in sorted(generated.iterdir()):
        shutil.copytree(case_dir, HERE / case_dir.name)
        kept.append(case_dir.name)
    (HERE / "TESTS").write_text(
        f"# onnx {onnx.__version__}: {len(kept)} node tests for {', '.join(OPS)}\n"
        + "\n".join(kept) + "\n")
    print(len(kept), "tests")
