"""Replaces a fixture's expected outputs with onnxruntime's, on the same inputs.

    ~/.cache/kiln-ci/venv/bin/python onnx/tests/data/import/onnxruntime_outputs.py NAME...

For each NAME, reads NAME.expected.json (written by the exporter's script with the
framework's own outputs), runs NAME.onnx with onnxruntime (CPU, graph optimizations off) on
the file's inputs, checks that every output agrees with the framework's within
1e-5 + 1e-5 |value|, and writes onnxruntime's outputs in their place (the exporter and notes
say so). The Rust tests then read the file without Python.
"""

import json
import sys

import numpy as np
import onnxruntime

from common import HERE, write_expected

for name in sys.argv[1:]:
    path = HERE / f"{name}.expected.json"
    document = json.loads(path.read_text())
    inputs = {key: np.asarray(entry["data"], dtype=np.float32).reshape(entry["shape"])
              for key, entry in document["inputs"].items()}
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(str(HERE / f"{name}.onnx"), options,
                                           providers=["CPUExecutionProvider"])
    names = list(document["outputs"])
    results = dict(zip(names, session.run(names, inputs)))
    for key in names:
        framework = np.asarray(document["outputs"][key]["data"], dtype=np.float64)
        ours = results[key].astype(np.float64).ravel()
        worst = np.max(np.abs(ours - framework) - 1e-5 * np.abs(framework))
        assert worst <= 1e-5, f"{name} {key}: onnxruntime and the exporter differ by {worst}"
        print(name, key, "onnxruntime vs exporter: max |diff|", np.max(np.abs(ours - framework)))
    write_expected(path, f"{document['exporter']}; outputs by onnxruntime {onnxruntime.__version__}",
                   inputs, results,
                   notes=f"onnxruntime CPU, graph optimizations disabled; {document['notes']} agrees within 1e-5")
